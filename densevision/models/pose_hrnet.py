"""Pose HRNet (Sun et al., "Deep High-Resolution Representation Learning for Human Pose Estimation", CVPR 2019).

The HRNet body of :mod:`densevision.models.hrnet` (stem, Bottleneck stage 1, multi-resolution stages 2–4), with
the last module of stage 4 fusing into the highest-resolution branch only, then a 1×1 convolution to one heatmap
per joint at stride 4 (256×192 input -> 64×48 heatmaps). The state-dict names are those of the official
deep-high-resolution-net code (``conv1, bn1, conv2, bn2, layer1, transition{1,2,3}, stage{2,3,4},
final_layer``; 1754 entries), so its released checkpoints load unchanged with ``pretrained=PATH``; the body of
an ImageNet classification HRNet of the same width loads with :meth:`PoseHRNet.load_body_weights`.

Parameters with 17 joints: W32 28,536,113, W48 63,595,745 (as the official networks).
"""

from __future__ import annotations

import os

import torch
from torch import nn

from densevision.errors import DenseVisionError
from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint, unwrap_state_dict
from densevision.models.hrnet import _BODY_MODULES, IMAGENET_MEAN, IMAGENET_STD, HRNetBody, _cfg_wide
from densevision.models.registry import register_model

HEATMAP_STRIDE = 4
COCO_NUM_JOINTS = 17


def _init_official(module: nn.Module) -> None:
    """The official initialisation: convolutions normal(std 0.001) with zero bias, BatchNorm 1 / 0."""
    if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
        nn.init.normal_(module.weight, std=0.001)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


class PoseHRNet(HRNetBody):
    """Top-down pose network: ``forward(B×3×H×W) -> B×K×ceil(H/4)×ceil(W/4)`` heatmaps (K = ``num_joints``).

    Args:
        num_joints: heatmaps predicted (17 for COCO persons).
        final_kernel: kernel of ``final_layer`` (1 in every released model; 3 pads by 1).
        **body_kwargs: :class:`~densevision.models.hrnet.HRNetBody` arguments (``width``, stage sizes).
    """

    def __init__(self, *, num_joints: int = COCO_NUM_JOINTS, final_kernel: int = 1, **body_kwargs) -> None:
        super().__init__(**body_kwargs)
        last = getattr(self, f"stage{self.num_stages + 1}")[-1]
        last.fuse_layers = nn.ModuleList(list(last.fuse_layers)[:1])
        self.num_joints = num_joints
        self.heatmap_stride = HEATMAP_STRIDE
        self.final_layer = nn.Conv2d(self.branch_channels[0], num_joints, final_kernel, 1, final_kernel // 2)
        self.pretrained_cfg: dict = {}
        self.apply(_init_official)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``B×3×H×W -> B×C×H/4×W/4``: the highest-resolution branch after the last fuse."""
        return self.forward_stages(self.forward_stem(x))[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.forward_features(x)).contiguous()

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Official deep-high-resolution-net checkpoints and densevision ones share the key names; a wrapper
        prefix (``backbone.``, ``model.``) is stripped."""
        return self._prepare_state_dict(state_dict, keep_body_only=False)

    def load_body_weights(self, path: str | os.PathLike, *, trust_checkpoint: bool = False) -> None:
        """Initialise the body from a classification HRNet checkpoint of the same width (official
        HRNet-Image-Classification, timm or densevision): every body key must match; the classification neck
        and the fuse paths the pose network drops are ignored, ``final_layer`` keeps its initialisation."""
        state = self._prepare_state_dict(
            unwrap_state_dict(read_checkpoint(path, trust_checkpoint=trust_checkpoint)), keep_body_only=True)
        own = self.state_dict()
        body = {k: v for k, v in state.items() if k in own}
        body.update({k: v for k, v in own.items() if k.split(".", 1)[0] not in _BODY_MODULES})
        load_state_dict_checked(self, body, str(path))


def _pretrained_cfg(name: str, num_joints: int) -> dict:
    """Settings of the official COCO weights (released as Google Drive / OneDrive folders, so no download location
    is named: load a downloaded copy with ``pretrained=PATH``); ``body_variant`` is the classification HRNet whose
    ImageNet weights start the body in training (:meth:`PoseHRNet.load_body_weights`)."""
    return {
        "architecture": name,
        "body_variant": name.removeprefix("pose_"),
        "input_size": (3, 256, 192),
        "mean": IMAGENET_MEAN,
        "std": IMAGENET_STD,
        "interpolation": "bilinear",
        "num_joints": num_joints,
        "heatmap_stride": HEATMAP_STRIDE,
        "first_conv": "conv1",
    }


default_cfgs = {name: _pretrained_cfg(name, COCO_NUM_JOINTS) for name in ("pose_hrnet_w32", "pose_hrnet_w48")}


def _create_pose_hrnet(name: str, default_width: int, *, num_joints: int = COCO_NUM_JOINTS, features_only: bool = False,
                       **kwargs) -> PoseHRNet:
    if features_only:
        raise DenseVisionError(f"{name} is a pose network; for HRNet features use hrnet_w{default_width}")
    model = PoseHRNet(num_joints=num_joints, **{**_cfg_wide(default_width), **kwargs})
    model.pretrained_cfg = _pretrained_cfg(name, num_joints)
    return model


@register_model(kind="pose")
def pose_hrnet_w32(**kwargs) -> PoseHRNet:
    """Pose HRNet-W32: 28.5M params (17 joints); COCO val 74.4 AP at 256×192 (official, detected boxes)."""
    return _create_pose_hrnet("pose_hrnet_w32", 32, **kwargs)


@register_model(kind="pose")
def pose_hrnet_w48(**kwargs) -> PoseHRNet:
    """Pose HRNet-W48: 63.6M params (17 joints); COCO val 75.1 AP at 256×192, 76.3 at 384×288 (official)."""
    return _create_pose_hrnet("pose_hrnet_w48", 48, **kwargs)
