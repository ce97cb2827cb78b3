"""timm's model interface, the parts every zoo classifier and feature extractor share.

``TimmInterface`` gives ``default_cfg`` (an alias of ``pretrained_cfg``), ``head_hidden_size``,
``set_grad_checkpointing`` and ``no_weight_decay``; :func:`global_pool` and :func:`check_global_pool` are the
two pooling modes the zoo heads support (``"avg"`` and ``""``, no pooling); :func:`to_output_fmt` turns a
channels-last map into the format ``forward_intermediates`` was asked for. The families implement
``forward_intermediates``, ``prune_intermediate_layers`` and ``group_matcher`` with timm's helpers
(:func:`timm.models.feature_take_indices`, :func:`timm.models.checkpoint_seq`).
"""

from __future__ import annotations

from typing import Any

import torch
from timm.models import checkpoint_seq
from torch import nn

POOL_TYPES = ("avg", "")
OUTPUT_FMTS = ("NCHW", "NHWC")


def check_global_pool(pool_type: str | None, allowed: tuple[str, ...] = POOL_TYPES) -> str:
    """``pool_type`` if the head supports it (None: ``"avg"``), else ValueError."""
    pool_type = "avg" if pool_type is None else pool_type
    if pool_type not in allowed:
        raise ValueError(f"global_pool {pool_type!r} not supported; choose one of {allowed}")
    return pool_type


def global_pool(x: torch.Tensor, pool_type: str, channels_last: bool) -> torch.Tensor:
    """Average over the spatial axes (``B×H×W×C`` or ``B×C×H×W`` -> ``B×C``) for ``"avg"``; ``x`` for ``""``."""
    if pool_type == "avg":
        return x.mean((1, 2) if channels_last else (2, 3))
    return x


def to_output_fmt(x: torch.Tensor, output_fmt: str) -> torch.Tensor:
    """A channels-last ``B×H×W×C`` map as ``output_fmt`` (``"NCHW"``: contiguous ``B×C×H×W``)."""
    return x.permute(0, 3, 1, 2).contiguous() if output_fmt == "NCHW" else x


def check_output_fmt(output_fmt: str, allowed: tuple[str, ...] = OUTPUT_FMTS) -> None:
    if output_fmt not in allowed:
        raise ValueError(f"output_fmt {output_fmt!r} not supported; choose one of {allowed}")


class TimmInterface(nn.Module):
    """Base of the zoo models: the timm attributes that need no knowledge of the architecture.

    Subclasses set ``pretrained_cfg`` and ``num_features`` (and ``num_classes`` for classifiers), read
    :meth:`checkpointing` in their forward passes, and override :meth:`no_weight_decay` where they own
    position tables.
    """

    pretrained_cfg: dict[str, Any]
    num_features: int
    grad_checkpointing: bool = False

    @property
    def default_cfg(self) -> dict[str, Any]:
        """timm's older name of ``pretrained_cfg``."""
        return self.pretrained_cfg

    @default_cfg.setter
    def default_cfg(self, cfg: dict[str, Any]) -> None:
        self.pretrained_cfg = cfg

    @property
    def head_hidden_size(self) -> int:
        """Width of the pre-logits features (``forward_head(..., pre_logits=True)``): ``num_features``."""
        return self.num_features

    @torch.jit.ignore
    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in the backward pass instead of storing them (same gradients,
        less memory). Only when gradients are recorded; inference keeps its fast paths."""
        self.grad_checkpointing = enable

    def checkpointing(self) -> bool:
        """Whether the forward pass should checkpoint its blocks now."""
        return self.grad_checkpointing and torch.is_grad_enabled() and not torch.jit.is_scripting()

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names timm's optimiser factory keeps out of weight decay besides norms and biases."""
        return set()


def run_stage(stage: nn.Module, x: torch.Tensor, checkpointing: bool) -> torch.Tensor:
    """``stage(x)``; a sequence of blocks is checkpointed block by block when ``checkpointing``."""
    if checkpointing and isinstance(stage, nn.Sequential):
        return checkpoint_seq(stage, x)
    return stage(x)
