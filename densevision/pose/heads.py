"""Heatmap heads that turn a backbone's last feature map into one heatmap per joint."""

from __future__ import annotations

import torch
from torch import nn


class SimpleBaselineHead(nn.Module):
    """SimpleBaseline (Xiao et al., ECCV 2018): ``num_deconv`` × (ConvTranspose2d 4×4 stride 2 padding 1, no
    bias + BN + ReLU) of ``channels``, then a 1×1 conv to ``num_joints``.

    ``forward(B×C×h×w) -> B×K×(h·2^n)×(w·2^n)`` (three deconvolutions: stride 32 -> stride 4).
    """

    def __init__(self, in_channels: int, num_joints: int, *, channels: int = 256, num_deconv: int = 3) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            layers += [nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels if num_deconv else in_channels, num_joints, 1)
        self.upsample = 2**num_deconv
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(x))


class HeatmapNet(nn.Module):
    """A feature extractor's last level followed by a heatmap head: ``B×3×H×W -> B×K×H/s×W/s`` with
    ``s = heatmap_stride`` (the body's stride divided by the head's upsampling)."""

    def __init__(self, body: nn.Module, head: SimpleBaselineHead, *, body_stride: int) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.heatmap_stride = max(body_stride // head.upsample, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)[-1])
