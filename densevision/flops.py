"""Model size and cost: parameter counts and multiply-adds (GMACs = FLOPs / 2) from torch.utils.flop_counter.

Models are built and run on the ``meta`` device (shapes only, no memory, no arithmetic), so even the largest
variants are counted in about a second; a model that cannot run on ``meta`` is counted on the CPU.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from densevision.models import create_model

__all__ = ["count_macs", "count_params", "default_input_size", "model_complexity"]


def count_params(model: nn.Module) -> int:
    """Number of parameters (buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def default_input_size(model: nn.Module) -> tuple[int, int, int]:
    """``(3, H, W)`` from the model's ``pretrained_cfg`` (``(3, 224, 224)`` when it has none)."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return tuple(cfg.get("input_size", (3, 224, 224)))


def count_macs(model: nn.Module, input_size: Sequence[int]) -> int:
    """Multiply-adds of one ``model(x)`` call for one ``input_size`` (C, H, W) image, in eval mode.

    Counts what ``torch.utils.flop_counter`` attributes to matmuls, convolutions and attention kernels
    (FLOPs / 2); element-wise work (norms, activations) is not counted, as in the published numbers.
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with FlopCounterMode(display=False) as counter, torch.no_grad():
            model(torch.zeros(1, *input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_complexity(name: str, input_size: Sequence[int] | None = None, **kwargs: Any) -> dict[str, Any]:
    """``{"name", "params", "gmacs", "input_size"}`` of a zoo model (1000 classes unless ``num_classes`` is
    given) at its default input size or ``input_size`` (C, H, W)."""
    try:
        with torch.device("meta"):
            model = create_model(name, **kwargs)
        size = tuple(input_size or default_input_size(model))
        macs = count_macs(model, size)
    except (NotImplementedError, RuntimeError):
        model = create_model(name, **kwargs)
        size = tuple(input_size or default_input_size(model))
        macs = count_macs(model, size)
    return {"name": name, "params": count_params(model), "gmacs": macs / 1e9, "input_size": list(size)}
