"""Semantic segmentation decode heads over a backbone's feature maps (wired from the ``out_channels`` /
``strides`` the backbone declares).

Every head maps ``list[B×C_i×H_i×W_i]`` (strides s_0 < s_1 < ...) to ``B×K×H_0×W_0`` logits at the finest
level's resolution:

- :class:`UperNetHead` (mmsegmentation ``UPerHead``): pyramid pooling on the coarsest map, FPN top-down fuse,
  all levels concatenated at the finest.
- :class:`SemanticFPNHead` (Kirillov et al., mmsegmentation ``FPN`` + ``FPNHead``).
- :class:`HRNetV2Head` (HRNet-Semantic-Segmentation ``seg_hrnet.py``): every map upsampled and concatenated,
  1×1 conv-BN-ReLU, 1×1 classifier.
- :class:`FCNHead`: the auxiliary head (one 3×3 conv-BN-ReLU) trained on an intermediate map.

Module names follow mmsegmentation (``psp_modules``, ``bottleneck``, ``lateral_convs``, ``fpn_convs``,
``fpn_bottleneck``, ``conv_seg``). The pyramid pooling is exportable to ONNX at dynamic sizes
(:func:`adaptive_avg_pool2d`). Norms are plain ``BatchNorm2d``; the engine turns them into
``SyncBatchNorm`` under DDP.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import FeaturePyramidNetwork

from densevision.models.hrnet import ConvBn, hrnet_v2_concat


def resize(x: torch.Tensor, size: Sequence[int] | torch.Size) -> torch.Tensor:
    """Bilinear resize (``align_corners=False``) of ``B×C×h×w`` to ``B×C×size``."""
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _pool_matrix(length: int | torch.Tensor, bins: int, like: torch.Tensor) -> torch.Tensor:
    """``bins×length`` averaging weights of adaptive pooling: bin ``i`` covers
    ``[floor(i·L/bins), ceil((i+1)·L/bins))``, as ``F.adaptive_avg_pool2d`` defines it."""
    index = torch.arange(bins, device=like.device).unsqueeze(1)
    start = torch.div(index * length, bins, rounding_mode="floor")
    end = torch.div((index + 1) * length + bins - 1, bins, rounding_mode="floor")
    position = torch.arange(length, device=like.device).unsqueeze(0)
    inside = (position >= start) & (position < end)
    return inside.to(like.dtype) / (end - start).to(like.dtype)


def adaptive_avg_pool2d(x: torch.Tensor, bins: int) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, bins)``: ``B×C×H×W -> B×C×bins×bins``.

    While exporting to ONNX it is two matrix products with averaging matrices built from the input's size
    (the ONNX exporter cannot write adaptive pooling whose bins do not divide a dynamic size); the result is
    the same up to rounding.
    """
    if not torch.onnx.is_in_onnx_export():
        return F.adaptive_avg_pool2d(x, bins)
    rows = _pool_matrix(x.shape[-2], bins, x)
    cols = _pool_matrix(x.shape[-1], bins, x)
    return rows @ x @ cols.transpose(0, 1)


class ClassifierMixin:
    """``Dropout2d`` then the 1×1 classifier ``conv_seg`` (weights normal std 0.01, bias 0)."""

    dropout: nn.Module
    conv_seg: nn.Conv2d

    def _init_classifier(self, channels: int, num_classes: int, dropout: float) -> None:
        self.dropout = nn.Dropout2d(dropout) if dropout > 0 else nn.Identity()
        self.conv_seg = nn.Conv2d(channels, num_classes, 1)
        nn.init.normal_(self.conv_seg.weight, std=0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """``B×C×h×w -> B×K×h×w``."""
        return self.conv_seg(self.dropout(x))


class PyramidPooling(nn.Module):
    """PSPNet's pooling module: per scale, adaptive average pooling → 1×1 conv-BN-ReLU → bilinear back.

    ``forward(B×C×h×w) -> list of len(pool_scales) maps B×channels×h×w``.
    """

    def __init__(self, in_channels: int, channels: int, pool_scales: Sequence[int] = (1, 2, 3, 6)) -> None:
        super().__init__()
        self.pool_scales = tuple(pool_scales)
        self.convs = nn.ModuleList(ConvBn(in_channels, channels, 1) for _ in self.pool_scales)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [resize(conv(adaptive_avg_pool2d(x, s)), x.shape[-2:])
                for s, conv in zip(self.pool_scales, self.convs, strict=True)]


class UperNetHead(ClassifierMixin, nn.Module):
    """UperNet: PPM on the coarsest map + FPN over the others, fused at the finest resolution.

    ``forward(list[B×C_i×H_i×W_i]) -> B×K×H_0×W_0``. ``channels`` is 512 in the Swin / AS-MLP recipes.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int, *, channels: int = 512,
                 pool_scales: Sequence[int] = (1, 2, 3, 6), dropout: float = 0.1) -> None:
        super().__init__()
        *fine, last = in_channels
        self.psp_modules = PyramidPooling(last, channels, pool_scales)
        self.bottleneck = ConvBn(last + len(pool_scales) * channels, channels, 3)
        self.lateral_convs = nn.ModuleList(ConvBn(c, channels, 1) for c in fine)
        self.fpn_convs = nn.ModuleList(ConvBn(channels, channels, 3) for _ in fine)
        self.fpn_bottleneck = ConvBn(len(in_channels) * channels, channels, 3)
        self._init_classifier(channels, num_classes, dropout)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        top = feats[-1]
        laterals = [conv(f) for conv, f in zip(self.lateral_convs, feats[:-1], strict=True)]
        laterals.append(self.bottleneck(torch.cat([top, *self.psp_modules(top)], dim=1)))
        for i in range(len(laterals) - 1, 0, -1):
            laterals[i - 1] = laterals[i - 1] + resize(laterals[i], laterals[i - 1].shape[-2:])
        outs = [conv(lat) for conv, lat in zip(self.fpn_convs, laterals[:-1], strict=True)] + [laterals[-1]]
        size = outs[0].shape[-2:]
        fused = torch.cat([outs[0], *(resize(o, size) for o in outs[1:])], dim=1)
        return self.classify(self.fpn_bottleneck(fused))


class SemanticFPNHead(ClassifierMixin, nn.Module):
    """Semantic FPN: an FPN (``fpn_channels``, 1×1 laterals and 3×3 outputs with bias, nearest top-down), then
    per level ``max(1, log2(s_i / s_0))`` × [3×3 conv-BN-ReLU ``channels``, ×2 bilinear when coarser than s_0],
    levels summed.

    ``forward(list[B×C_i×H_i×W_i]) -> B×K×H_0×W_0``.
    """

    def __init__(self, in_channels: Sequence[int], strides: Sequence[int], num_classes: int, *,
                 fpn_channels: int = 256, channels: int = 128, dropout: float = 0.1) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(in_channels), fpn_channels)
        self.scale_heads = nn.ModuleList()
        for stride in strides:
            steps = max(1, round(math.log2(stride / strides[0])))
            layers: list[nn.Module] = []
            for k in range(steps):
                layers.append(ConvBn(fpn_channels if k == 0 else channels, channels, 3))
                if stride != strides[0]:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.scale_heads.append(nn.Sequential(*layers))
        self._init_classifier(channels, num_classes, dropout)

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        levels = list(self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats))).values())
        out = self.scale_heads[0](levels[0])
        for head, level in zip(self.scale_heads[1:], levels[1:], strict=True):
            out = out + resize(head(level), out.shape[-2:])
        return self.classify(out)


class HRNetV2Head(nn.Module):
    """HRNetV2: every map bilinearly resized to the finest and concatenated (ΣC_i channels), 1×1 conv (with
    bias) → BN → ReLU → 1×1 classifier.

    ``forward(list[B×C_i×H_i×W_i]) -> B×K×H_0×W_0``. Module names ``last_layer.{0,1,3}`` as upstream.
    """

    def __init__(self, in_channels: Sequence[int], num_classes: int) -> None:
        super().__init__()
        total = sum(in_channels)
        self.last_layer = nn.Sequential(
            nn.Conv2d(total, total, 1), nn.BatchNorm2d(total), nn.ReLU(inplace=True), nn.Conv2d(total, num_classes, 1)
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        return self.last_layer(hrnet_v2_concat(feats))


class FCNHead(ClassifierMixin, nn.Module):
    """Auxiliary FCN head: 3×3 conv-BN-ReLU (``channels``) → Dropout2d → 1×1 classifier.

    ``forward(B×C×h×w) -> B×K×h×w``.
    """

    def __init__(self, in_channels: int, num_classes: int, *, channels: int = 256, dropout: float = 0.1) -> None:
        super().__init__()
        self.convs = ConvBn(in_channels, channels, 3)
        self._init_classifier(channels, num_classes, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classify(self.convs(x))


HEADS = ("upernet", "fpn", "hrnetv2")


def build_head(name: str, in_channels: Sequence[int], strides: Sequence[int], num_classes: int, *,
               channels: int | None = None, fpn_channels: int = 256, pool_scales: Sequence[int] = (1, 2, 3, 6),
               dropout: float = 0.1) -> nn.Module:
    """Decode head ``name`` (one of :data:`HEADS`) for maps with ``in_channels`` / ``strides``; ``channels``
    defaults to the head's recipe (UperNet 512, Semantic FPN 128; the HRNetV2 head keeps ΣC_i)."""
    if name == "upernet":
        return UperNetHead(in_channels, num_classes, channels=channels or 512, pool_scales=pool_scales,
                           dropout=dropout)
    if name == "fpn":
        return SemanticFPNHead(in_channels, strides, num_classes, fpn_channels=fpn_channels,
                               channels=channels or 128, dropout=dropout)
    if name == "hrnetv2":
        return HRNetV2Head(in_channels, num_classes)
    raise ValueError(f"unknown segmentation head {name!r}; choose one of {', '.join(HEADS)}")
