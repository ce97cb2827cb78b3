"""Building top-down pose networks, describing them in checkpoints and rebuilding them from one.

:func:`build_pose_model` returns a :class:`TopDownPose`: images in [0, 1] are normalised as the network's
weights expect, then mapped to heatmaps. The network is either a zoo pose network (``pose_hrnet_w32``) or
any zoo / ``timm:<name>`` backbone under a heatmap head (SimpleBaseline, HRNetV2, or ViTPose's simple
decoder for plain ViTs).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from densevision.engine.checkpoint import find_checkpoint, model_spec, read_model_spec
from densevision.errors import CheckpointError, DenseVisionError
from densevision.models import create_model, list_models, model_family
from densevision.models.bodies import TIMM_PREFIX, build_body
from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint
from densevision.pose.heads import HeatmapNet, HRNetV2HeatmapHead, SimpleBaselineHead, ViTPoseSimpleHead

BUILDER = "top_down_pose"
HEADS = {"simple": SimpleBaselineHead, "hrnetv2": HRNetV2HeatmapHead, "vitpose": ViTPoseSimpleHead}
VIT_STRIDE16_LEVEL = 2  # the zoo ViT body's level at stride 16: the last block's patch tokens, layer-normed
_IMAGENET_MEAN = (0.485, 0.456, 0.406)
_IMAGENET_STD = (0.229, 0.224, 0.225)


class TopDownPose(nn.Module):
    """``forward(B×3×H×W in [0, 1]) -> B×K×H/s×W/s`` heatmaps (``s = heatmap_stride``), normalising the input
    with the network's ``mean`` / ``std`` first. ``input_size`` is the (H, W) crop the network is trained on."""

    def __init__(self, network: nn.Module, *, num_joints: int, heatmap_stride: int, input_size: Sequence[int],
                 mean: Sequence[float], std: Sequence[float]) -> None:
        super().__init__()
        self.network = network
        self.num_joints = num_joints
        self.heatmap_stride = heatmap_stride
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def heatmap_size(self) -> tuple[int, int]:
        """(h, w) of the heatmaps for ``input_size`` crops."""
        return (-(-self.input_size[0] // self.heatmap_stride), -(-self.input_size[1] // self.heatmap_stride))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images - self.mean) / self.std)


def build_pose_model(
    *,
    num_joints: int,
    input_size: Sequence[int] = (256, 192),
    model: str | None = None,
    backbone: str | None = None,
    head: str = "simple",
    overrides: Mapping[str, Any] | None = None,
    weights: str | os.PathLike | None = None,
) -> TopDownPose:
    """A top-down pose network for ``num_joints`` joints and ``input_size`` (H, W) crops.

    Either ``model`` (a zoo pose network such as ``pose_hrnet_w32``; ``weights``: its checkpoint, e.g. an
    official release) or ``backbone`` (a zoo name or ``timm:<name>``; ``weights``: a zoo backbone checkpoint)
    with ``head`` (``"simple"``: SimpleBaseline on the last level; ``"hrnetv2"``: HRNetV2's concatenation of all
    levels at the finest stride; ``"vitpose"``: ViTPose's simple decoder on a zoo ViT's stride-16 map).
    ``overrides``: architecture arguments of the model/backbone.
    """
    overrides = dict(overrides or {})
    if (model is None) == (backbone is None):
        raise DenseVisionError("give exactly one of --model (a pose network) and --backbone (with --head)")
    if model is not None:
        if model not in list_models(kind="pose"):
            raise DenseVisionError(f"--model {model}: not a pose network (choose from "
                                   f"{', '.join(list_models(kind='pose'))}); other backbones go with --backbone")
        network = create_model(model, num_joints=num_joints, pretrained=weights, **overrides)
        stride, cfg = network.heatmap_stride, network.pretrained_cfg
    else:
        if head not in HEADS:
            raise DenseVisionError(f"--head {head}: choose from {', '.join(HEADS)}")
        body = _vitpose_body(backbone, weights, overrides) if head == "vitpose" else build_body(
            backbone, weights=weights, **overrides)
        body_stride, cfg = body.strides[-1], body.pretrained_cfg
        if input_size[0] % body_stride or input_size[1] % body_stride:
            raise DenseVisionError(f"--input-size {input_size[0]} {input_size[1]}: must be multiples of the "
                                   f"backbone's stride {body_stride}")
        network = HeatmapNet(body, HEADS[head](list(body.out_channels), num_joints))
        stride = network.heatmap_stride
    return TopDownPose(network, num_joints=num_joints, heatmap_stride=stride, input_size=input_size,
                       mean=cfg.get("mean", _IMAGENET_MEAN), std=cfg.get("std", _IMAGENET_STD))


def _vitpose_body(backbone: str, weights: str | os.PathLike | None, overrides: Mapping[str, Any]) -> nn.Module:
    """The plain ViT body ViTPose's simple decoder reads: a zoo ViT with 16-pixel patches returning only its
    stride-16 map (no pyramid levels built that the head would not use)."""
    if backbone.startswith(TIMM_PREFIX) or model_family(backbone) != "vit":
        raise DenseVisionError(f"--head vitpose decodes a plain ViT's stride-16 map: --backbone must be a zoo "
                               f"ViT (vit_*), got {backbone}")
    body = build_body(backbone, weights=weights, **{**overrides, "out_indices": (VIT_STRIDE16_LEVEL,)})
    if body.patch_size != 16:
        raise DenseVisionError(f"--head vitpose needs 16-pixel patches (a stride-16 map); {backbone} has "
                               f"{body.patch_size}-pixel patches")
    return body


def pose_model_spec(config: Mapping[str, Any], *, num_joints: int, meta: Mapping[str, Any]) -> dict[str, Any]:
    """The checkpoint's model spec: :func:`build_pose_model`'s arguments (weights excluded: the checkpoint holds
    them) and ``meta`` (the categories with keypoint names, flip pairs and OKS sigmas)."""
    arguments = {"num_joints": num_joints, **{k: config[k] for k in (
        "input_size", "model", "backbone", "head", "overrides")}}
    arguments["input_size"] = list(arguments["input_size"])
    return model_spec(BUILDER, arguments, dict(meta))


def load_pose_model(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> tuple[TopDownPose, dict]:
    """The network of a training checkpoint (file or run directory: ``best.pt``, else ``last.pt``) and its
    model-spec ``meta``."""
    path = find_checkpoint(path)
    state = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    spec = read_model_spec(state, str(path))
    if spec is None or spec["builder"] != BUILDER:
        raise CheckpointError(f"{path}: not a densevision pose checkpoint (model spec "
                              f"{None if spec is None else spec['builder']!r})")
    model = build_pose_model(**spec["config"])
    load_state_dict_checked(model, state["model"], str(path))
    return model.eval(), spec["meta"]
