"""Detection backbones: a zoo or timm feature extractor followed by a neck (FPN, or HRNetV2p for HRNet).

``build_detection_backbone("hrnet_w18_small")`` or ``build_detection_backbone("timm:resnet18")`` returns a
``DetectionBackbone``: ``forward(B×3×H×W) -> OrderedDict[str, B×C×h×w]`` with keys ``"0".."4"`` (strides 4–64
for the usual four-level bodies), and the facts the detection heads are wired from: ``out_channels``,
``strides``, ``image_mean`` / ``image_std`` (from the body's ``pretrained_cfg``) and ``size_divisible``.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torchvision.ops import FeaturePyramidNetwork
from torchvision.ops.feature_pyramid_network import LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d

from densevision.errors import DenseVisionError
from densevision.models import model_family
from densevision.models.bodies import TIMM_PREFIX, build_body, check_body

# Used only when a body declares no ``pretrained_cfg`` (timm.data.constants IMAGENET_DEFAULT_MEAN / _STD).
_FALLBACK_MEAN = (0.485, 0.456, 0.406)
_FALLBACK_STD = (0.229, 0.224, 0.225)


class FPNNeck(nn.Module):
    """torchvision ``FeaturePyramidNetwork`` + ``LastLevelMaxPool`` over a list of maps.

    ``forward(list of B×C_i×H_i×W_i) -> list of B×out_channels×h×w``: one map per input plus a stride-2
    max-pooled extra level on top, so strides ``s_1..s_n`` become ``s_1..s_n, 2·s_n``.
    """

    def __init__(self, in_channels: Sequence[int], in_strides: Sequence[int], out_channels: int) -> None:
        super().__init__()
        self.fpn = FeaturePyramidNetwork(list(in_channels), out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels
        self.strides = [*in_strides, 2 * in_strides[-1]]

    def forward(self, feats: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        out = self.fpn(OrderedDict((str(i), f) for i, f in enumerate(feats)))
        return list(out.values())


class DetectionBackbone(nn.Module):
    """Body + neck as torchvision detection expects: ``forward(B×3×H×W) -> OrderedDict[str, B×C×h×w]``.

    Attributes: ``out_channels`` (int, every level), ``strides`` (one per level), ``image_mean`` /
    ``image_std`` (normalisation the body was trained with), ``size_divisible`` (largest body stride: batches
    are padded to a multiple of it).
    """

    def __init__(self, body: nn.Module, neck: nn.Module, *, name: str) -> None:
        super().__init__()
        self.body = body
        self.neck = neck
        self.name = name
        self.out_channels = int(neck.out_channels)
        self.strides = [int(s) for s in neck.strides]
        cfg = getattr(body, "pretrained_cfg", None) or {}
        self.image_mean = [float(v) for v in cfg.get("mean", _FALLBACK_MEAN)]
        self.image_std = [float(v) for v in cfg.get("std", _FALLBACK_STD)]
        self.input_size = tuple(cfg.get("input_size", (3, 224, 224)))
        self.size_divisible = int(max(body.strides))

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        feats = self.neck(self.body(x))
        return OrderedDict((str(i), f) for i, f in enumerate(feats))

    def featmap_names(self, levels: int = 4) -> list[str]:
        """Names of the finest ``levels`` maps (the RoI poolers' inputs)."""
        return [str(i) for i in range(min(levels, len(self.strides)))]


def uses_hrnetv2p(name: str) -> bool:
    """HRNet bodies get the HRNetV2p neck (concatenate all branches, then pool), the rest an FPN."""
    return not name.startswith(TIMM_PREFIX) and model_family(name) == "hrnet"


def build_neck(name: str, body: nn.Module, out_channels: int) -> nn.Module:
    """HRNetV2p for zoo HRNet bodies, FPN + max-pooled extra level for every other body."""
    if uses_hrnetv2p(name):
        from densevision.detection.necks import HRNetV2pNeck

        return HRNetV2pNeck(list(body.out_channels), out_channels)
    return FPNNeck(body.out_channels, body.strides, out_channels)


def freeze_bn(module: nn.Module) -> nn.Module:
    """Replace every ``BatchNorm2d`` in ``module`` by ``FrozenBatchNorm2d`` holding the same statistics."""
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            frozen.weight.copy_(child.weight.detach())
            frozen.bias.copy_(child.bias.detach())
            frozen.running_mean.copy_(child.running_mean)
            frozen.running_var.copy_(child.running_var)
            setattr(module, name, frozen)
        else:
            freeze_bn(child)
    return module


# Zoo bodies that do not describe their stages themselves: parameter-name prefixes of [stem, stage 1, ...].
_STAGE_PREFIXES: dict[str, tuple[tuple[str, ...], ...]] = {
    "swin": (("patch_embed", "absolute_pos_embed"), ("layers.0", "norm0"), ("layers.1", "norm1"),
             ("layers.2", "norm2"), ("layers.3", "norm3")),
    "asmlp": (("patch_embed",), ("layers.0", "norm0"), ("layers.1", "norm1"), ("layers.2", "norm2"),
              ("layers.3", "norm3")),
    "cyclemlp": (("patch_embed",), ("network.0", "norm0"), ("network.1", "network.2", "norm2"),
                 ("network.3", "network.4", "norm4"), ("network.5", "network.6", "norm6")),
}


def stage_parameters(body: nn.Module, family: str | None = None) -> list[list[nn.Parameter]]:
    """The body's parameters as ``[stem, stage 1, ..., stage n]``.

    From the body's ``stage_parameters()`` or ``stage_groups()`` (lists of modules) when it has one, else from
    the name prefixes known for its ``family``.
    """
    if hasattr(body, "stage_parameters"):
        return body.stage_parameters()
    if hasattr(body, "stage_groups"):
        return [[p for module in group for p in module.parameters()] for group in body.stage_groups()]
    if family not in _STAGE_PREFIXES:
        raise DenseVisionError(f"{type(body).__name__} does not describe its stages, so freeze_at is unsupported")
    table = _STAGE_PREFIXES[family]
    groups: list[list[nn.Parameter]] = [[] for _ in table]
    for name, param in body.named_parameters():
        index = next((i for i, prefixes in enumerate(table)
                      if any(name == p or name.startswith(p + ".") for p in prefixes)), None)
        if index is None:
            raise DenseVisionError(f"{type(body).__name__}: parameter {name} belongs to no known stage")
        groups[index].append(param)
    return groups


def freeze_stages(body: nn.Module, freeze_at: int, family: str | None = None) -> None:
    """Stop gradients in the stem (``freeze_at >= 1``) and the first ``freeze_at - 1`` stages (detectron2)."""
    if freeze_at <= 0:
        return
    groups = stage_parameters(body, family)
    if freeze_at > len(groups):
        raise DenseVisionError(f"freeze_at={freeze_at} exceeds the body's stem + {len(groups) - 1} stages")
    for group in groups[:freeze_at]:
        for p in group:
            p.requires_grad_(False)


def build_detection_backbone(
    name: str,
    *,
    neck_channels: int = 256,
    weights: str | os.PathLike | None = None,
    trust_checkpoint: bool = False,
    freeze_at: int = 0,
    frozen_bn: bool = False,
    body_kwargs: Mapping[str, Any] | None = None,
) -> DetectionBackbone:
    """Body named ``name`` (zoo name or ``"timm:<model>"``) + FPN (HRNetV2p for HRNet) with ``neck_channels``.

    ``frozen_bn`` swaps the body's BatchNorms for ``FrozenBatchNorm2d`` (the usual choice with pretrained
    weights and small batches); ``freeze_at`` freezes the stem and the first ``freeze_at - 1`` stages.
    """
    body = build_body(name, weights=weights, trust_checkpoint=trust_checkpoint, **dict(body_kwargs or {}))
    if not hasattr(body, "out_channels") or not hasattr(body, "strides"):
        raise DenseVisionError(f"backbone {name!r} does not declare out_channels and strides")
    if list(body.strides) != sorted(body.strides):
        raise DenseVisionError(f"backbone {name!r}: feature strides {list(body.strides)} are not increasing")
    check_body(body, name)
    if frozen_bn:
        freeze_bn(body)
    family = None if name.startswith(TIMM_PREFIX) else model_family(name)
    freeze_stages(body, freeze_at, family)
    return DetectionBackbone(body, build_neck(name, body, neck_channels), name=name)

