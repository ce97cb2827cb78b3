"""Stochastic depth."""

from __future__ import annotations

import torch
from timm.layers import register_notrace_module
from torch import nn


def drop_path(x: torch.Tensor, drop_prob: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``drop_prob`` and rescale the rest."""
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    shape = [x.shape[0]] + [1] * (x.ndim - 1)
    return x * x.new_empty(shape).bernoulli_(keep).div_(keep)


@register_notrace_module  # random per-sample mask: a leaf for torch.fx
class DropPath(nn.Module):
    """Stochastic depth (Huang et al., 2016) per sample; identity in eval mode."""

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"
