"""Necks between a multi-scale body and the detection heads."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densevision.models.hrnet import hrnet_v2_concat


class HRNetV2pNeck(nn.Module):
    """HRNetV2p (Sun et al., 2019): the HRNetV2 concatenation of all branches, reduced by a 1×1 conv and
    average-pooled into a pyramid, with a 3×3 conv per level (mmdetection's ``HRFPN``).

    ``forward([B×C_i×H_i×W_i], i = 0..3, H_0 at stride 4) -> [B×out_channels×ceil(H_0/2^k)×ceil(W_0/2^k)]``,
    k = 0..num_levels-1 (strides 4, 8, 16, 32, 64). The pooling rounds up (``ceil_mode``), so odd sizes keep
    their last row and column, as the branches do; on sizes divisible by 2^(num_levels-1) it equals HRFPN.

    Keys: ``reduction_conv`` (1×1, bias), ``fpn_convs.{k}`` (3×3, bias); mmdetection's
    ``neck.reduction_conv.conv.*`` / ``neck.fpn_convs.{k}.conv.*`` load through ``convert_state_dict``.
    """

    def __init__(
        self, in_channels: Sequence[int], out_channels: int = 256, *, num_levels: int = 5, first_stride: int = 4
    ) -> None:
        super().__init__()
        self.in_channels = list(in_channels)
        self.out_channels = out_channels
        self.strides = [first_stride * 2**k for k in range(num_levels)]
        self.reduction_conv = nn.Conv2d(sum(self.in_channels), out_channels, 1)
        self.fpn_convs = nn.ModuleList(nn.Conv2d(out_channels, out_channels, 3, padding=1) for _ in range(num_levels))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, a=1)
                nn.init.zeros_(m.bias)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        if len(features) != len(self.in_channels):
            raise ValueError(f"HRNetV2pNeck expects {len(self.in_channels)} maps, got {len(features)}")
        x = self.reduction_conv(hrnet_v2_concat(features))
        levels = [x] + [F.avg_pool2d(x, 2**k, 2**k, ceil_mode=True) for k in range(1, len(self.fpn_convs))]
        return [conv(level) for conv, level in zip(self.fpn_convs, levels, strict=True)]

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Accept mmdetection ``HRFPN`` keys (``neck.`` prefix, ``ConvModule``'s ``.conv.``) besides our own."""
        if any(k.startswith("neck.") for k in state_dict):
            state_dict = {k[len("neck."):]: v for k, v in state_dict.items() if k.startswith("neck.")}
        return {k.replace(".conv.", "."): v for k, v in state_dict.items()}
