"""Channel MLPs used by the transformer and MLP-like blocks."""

from __future__ import annotations

import torch
from torch import nn

from densevision.layers.activation import InplaceGELU


class Mlp(nn.Module):
    """``fc2(drop(act(fc1(x))))`` over the last axis (``…×C -> …×C_out``); keys ``fc1``, ``fc2`` as in timm.

    The default activation is exact GELU, applied in place at inference (``fc1``'s output is a temporary).
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int | None = None,
        out_features: int | None = None,
        act_layer: type[nn.Module] = InplaceGELU,
        drop: float = 0.0,
        bias: bool = True,
    ) -> None:
        super().__init__()
        hidden_features = hidden_features or in_features
        out_features = out_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))
