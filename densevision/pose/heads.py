"""Heatmap heads that turn a backbone's feature maps into one heatmap per joint."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from densevision.models.hrnet import hrnet_v2_concat


class SimpleBaselineHead(nn.Module):
    """SimpleBaseline (Xiao et al., ECCV 2018): ``num_deconv`` × (ConvTranspose2d 4×4 stride 2 padding 1, no
    bias + BN + ReLU) of ``channels``, then a 1×1 conv to ``num_joints``.

    ``forward(feats) -> B×K×(h·2^n)×(w·2^n)`` from the last map ``B×C×h×w`` of ``feats`` (three
    deconvolutions: stride 32 -> stride 4).
    """

    def __init__(self, in_channels: Sequence[int], num_joints: int, *, channels: int = 256,
                 num_deconv: int = 3) -> None:
        super().__init__()
        in_channels = in_channels[-1]
        layers: list[nn.Module] = []
        for i in range(num_deconv):
            layers += [nn.ConvTranspose2d(in_channels if i == 0 else channels, channels, 4, 2, 1, bias=False),
                       nn.BatchNorm2d(channels), nn.ReLU(inplace=True)]
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels if num_deconv else in_channels, num_joints, 1)
        self.upsample = 2**num_deconv
        self.level = -1
        for m in self.deconv_layers.modules():
            if isinstance(m, nn.ConvTranspose2d):
                nn.init.normal_(m.weight, std=0.001)
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(feats[-1]))


class HRNetV2HeatmapHead(nn.Module):
    """HRNetV2's representation for heatmaps (as for facial landmarks in the HRNetV2 paper): every level resized
    to the finest and concatenated (ΣC_i channels), 1×1 conv-BN-ReLU, 1×1 conv to ``num_joints``.

    ``forward(list[B×C_i×H_i×W_i]) -> B×K×H_0×W_0`` (stride of the finest level, 4 for HRNet).
    """

    def __init__(self, in_channels: Sequence[int], num_joints: int) -> None:
        super().__init__()
        total = sum(in_channels)
        self.fuse = nn.Sequential(nn.Conv2d(total, total, 1, bias=False), nn.BatchNorm2d(total), nn.ReLU(inplace=True))
        self.final_layer = nn.Conv2d(total, num_joints, 1)
        self.upsample = 1
        self.level = 0
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.final_layer(self.fuse(hrnet_v2_concat(feats)))


class ViTPoseSimpleHead(nn.Module):
    """ViTPose's simple decoder (Xu et al., NeurIPS 2022) for plain ViTs: the last feature map ``B×C×h×w``
    (stride 16) through ReLU, bilinear ×``upsample`` (align_corners False), then a 3×3 conv to ``num_joints``.

    ``forward(feats) -> B×K×(h·4)×(w·4)`` (stride 16 -> stride 4). The paper words it "upsample, then ReLU";
    the released code (mmpose's ``TopdownHeatmapSimpleHead`` with ``upsample=4``, ``num_deconv_layers=0``,
    ``final_conv_kernel=3``) applies the ReLU first, which is what its checkpoints expect.
    """

    def __init__(self, in_channels: Sequence[int], num_joints: int, *, upsample: int = 4) -> None:
        super().__init__()
        self.final_layer = nn.Conv2d(in_channels[-1], num_joints, 3, padding=1)
        self.upsample = upsample
        self.level = -1
        nn.init.normal_(self.final_layer.weight, std=0.001)
        nn.init.zeros_(self.final_layer.bias)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        x = F.interpolate(F.relu(feats[-1]), scale_factor=self.upsample, mode="bilinear", align_corners=False)
        return self.final_layer(x)


class HeatmapNet(nn.Module):
    """A feature extractor followed by a heatmap head: ``B×3×H×W -> B×K×H/s×W/s`` with ``s = heatmap_stride``
    (the stride of the level the head starts from divided by the head's upsampling)."""

    def __init__(self, body: nn.Module, head: SimpleBaselineHead | HRNetV2HeatmapHead | ViTPoseSimpleHead) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.heatmap_stride = max(body.strides[head.level] // head.upsample, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))
