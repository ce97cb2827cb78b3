"""The one place where a device name given by the user (``--device``) becomes a ``torch.device``."""

from __future__ import annotations

import re

import torch

from densevision.errors import DenseVisionError

DEVICE_CHOICES = ("auto", "cpu", "cuda")
_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$")


def resolve_device(name: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or None) -> CUDA when available, else the CPU; ``"cpu"``, ``"cuda"`` and ``"cuda:N"`` as
    given. An unknown name, or CUDA on a machine without it, is one :class:`DenseVisionError` line."""
    if isinstance(name, torch.device):
        name = str(name)
    name = "auto" if name is None else str(name).strip().lower()
    if not _DEVICE.match(name):
        raise DenseVisionError(f"unknown device {name!r}; use auto, cpu, cuda or cuda:N")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise DenseVisionError(f"device {name} requested but CUDA is not available; use --device cpu")
    return device
