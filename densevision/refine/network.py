"""The BPR refinement network: HRNetV2 over an image patch plus its coarse mask, two classes per pixel.

The image patch (resized to ``input_size``, bilinear, ImageNet mean/std) enters the HRNet stem unchanged,
so the stem keeps ImageNet HRNet weights; the coarse mask (resized nearest, mapped to {−1, +1}) enters
through its own 3×3 stride-2 convolution (``conv_mask``, 1 → stem width, no bias) whose output is added to
``conv1(image)`` before ``bn1``. Head: the four branches resized to branch 0 (stride 4) and concatenated,
1×1 conv-BN-ReLU, 1×1 conv to background / foreground logits.

State-dict names: ``backbone.*`` (the zoo's HRNet names), ``conv_mask``, ``head.{0,1,3}``. Official BPR
checkpoints (mmseg ``EncoderDecoderRefine``: ``backbone.conv_mask``, ``decode_head.convs.0.{conv,bn}``,
``decode_head.conv_seg``) are converted on load.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from densevision.engine.checkpoint import find_checkpoint, model_spec, read_model_spec
from densevision.errors import CheckpointError, DenseVisionError
from densevision.models import create_model
from densevision.models.checkpoint import (
    load_pretrained,
    load_state_dict_checked,
    read_checkpoint,
    unwrap_state_dict,
)
from densevision.models.hrnet import IMAGENET_MEAN, IMAGENET_STD, hrnet_v2_concat
from densevision.refine.config import DEFAULT_BACKBONE, DEFAULT_INPUT_SIZE
from densevision.refine.patches import DEFAULT_PATCH_SIZE

_OFFICIAL_KEYS = {
    "backbone.conv_mask.": "conv_mask.",
    "decode_head.convs.0.conv.": "head.0.",
    "decode_head.convs.0.bn.": "head.1.",
    "decode_head.conv_seg.": "head.3.",
}


class RefineNet(nn.Module):
    """Boundary patch refinement network.

    ``forward(image: B×3×P×P in [0, 1], mask: B×P×P binary) -> B×2×S/4×S/4`` logits (S = ``input_size``);
    :meth:`predict` gives the foreground probability at the patch size.

    Args:
        backbone: an HRNet feature extractor of the zoo (``forward_stem`` with a stem residual,
            ``forward_stages``, ``out_channels``).
        input_size: side the patches are resized to before the network (128 for W18-small, 256 for W48).
        patch_size: side of the patches cut from the image (64 in BPR); stored so inference uses what training
            used.
        arch: how the network was built (backbone name and overrides), saved with training checkpoints.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        input_size: int = DEFAULT_INPUT_SIZE,
        patch_size: int = DEFAULT_PATCH_SIZE,
        arch: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if not all(hasattr(backbone, a) for a in ("forward_stem", "forward_stages", "conv1")):
            raise DenseVisionError(f"{type(backbone).__name__} is not a zoo HRNet feature extractor")
        self.backbone = backbone
        self.input_size = input_size
        self.patch_size = patch_size
        self.arch = dict(arch or {})
        stem = backbone.conv1
        self.conv_mask = nn.Conv2d(1, stem.out_channels, 3, stem.stride, 1, bias=False)
        channels = sum(backbone.out_channels)
        self.head = nn.Sequential(
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.BatchNorm2d(channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, 2, 1),
        )
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        nn.init.kaiming_normal_(self.conv_mask.weight, mode="fan_out", nonlinearity="relu")
        nn.init.kaiming_normal_(self.head[0].weight, mode="fan_out", nonlinearity="relu")
        nn.init.normal_(self.head[3].weight, std=0.01)
        nn.init.zeros_(self.head[3].bias)

    def prepare(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Network inputs: B×3×P×P image in [0, 1] -> B×3×S×S normalised (bilinear); B×P×P binary mask ->
        B×1×S×S in {−1, +1} (nearest)."""
        size = (self.input_size, self.input_size)
        image = image.float()
        if image.shape[-2:] != size:
            image = F.interpolate(image, size=size, mode="bilinear", align_corners=False)
        mask = mask[:, None].float()
        if mask.shape[-2:] != size:
            mask = F.interpolate(mask, size=size, mode="nearest")
        return (image - self.mean) / self.std, mask * 2 - 1

    def forward(self, image: torch.Tensor, mask: torch.Tensor, size: int | None = None) -> torch.Tensor:
        """B×3×P×P image in [0, 1] and B×P×P coarse mask -> B×2×S/4×S/4 logits, or B×2×size×size resized
        (bilinear) when ``size`` is given."""
        image, mask = self.prepare(image, mask)
        x = self.backbone.forward_stem(image, stem_residual=self.conv_mask(mask))
        logits = self.head(hrnet_v2_concat(self.backbone.forward_stages(x)))
        if size is not None:
            logits = F.interpolate(logits, size=(size, size), mode="bilinear", align_corners=False)
        return logits

    @torch.no_grad()
    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Foreground probability (softmax) at the patch's own size: B×3×P×P, B×P×P -> B×P×P float32."""
        return self(image, mask, size=image.shape[-1]).float().softmax(1)[:, 1]

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Own checkpoints pass through; official BPR (mmseg) checkpoints get renamed."""
        out = {}
        for key, value in state_dict.items():
            for old, new in _OFFICIAL_KEYS.items():
                if key.startswith(old):
                    key = new + key[len(old):]
                    break
            out[key] = value
        return out


def build_refine_net(
    backbone: str = DEFAULT_BACKBONE,
    *,
    input_size: int = DEFAULT_INPUT_SIZE,
    patch_size: int = DEFAULT_PATCH_SIZE,
    backbone_weights: str | os.PathLike | None = None,
    trust_checkpoint: bool = False,
    **overrides: Any,
) -> RefineNet:
    """A BPR network over a zoo HRNet.

    Args:
        backbone: zoo name of the HRNet (``hrnet_w18_small_v2`` as in BPR; ``hrnet_w48`` for the large model).
        input_size: network input side the patches are resized to.
        patch_size: side of the image patches.
        backbone_weights: ImageNet (official / timm) HRNet checkpoint for the backbone.
        trust_checkpoint: allow a ``backbone_weights`` file that needs full unpickling.
        **overrides: architecture overrides of the backbone (e.g. ``width=4`` for a tiny test network); the
            fuse upsampling is bilinear as in the segmentation code unless overridden.
    """
    overrides = {"fuse_mode": "bilinear", **overrides}
    body = create_model(backbone, features_only=True, **overrides)
    if backbone_weights is not None:
        load_pretrained(body, backbone_weights, trust_checkpoint=trust_checkpoint)
    arch = {"backbone": backbone, "input_size": input_size, "patch_size": patch_size, "overrides": overrides}
    return RefineNet(body, input_size=input_size, patch_size=patch_size, arch=arch)


def refine_net_spec(model: RefineNet) -> dict[str, Any]:
    """The ``refine_net`` model spec of a network: its :func:`build_refine_net` arguments."""
    return model_spec("refine_net", model.arch)


def load_refine_net(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> RefineNet:
    """Rebuild a trained network from a ``bpr train`` run directory (:func:`find_checkpoint`) or a
    checkpoint file.

    The architecture comes from the checkpoint's model spec; files without one (an official BPR
    ``hrnet18s_128`` checkpoint, a bare state dict) get the defaults: HRNetV2-W18-small, input 128, patch 64.
    """
    file = find_checkpoint(path)
    state = read_checkpoint(file, trust_checkpoint=trust_checkpoint)
    spec = read_model_spec(state, str(file)) if isinstance(state, Mapping) else None
    if spec is not None and spec["builder"] != "refine_net":
        raise CheckpointError(f"{file}: holds a {spec['builder']} model, not a BPR refinement network")
    arch = spec["config"] if spec is not None else {}
    try:
        model = build_refine_net(
            arch.get("backbone", DEFAULT_BACKBONE),
            input_size=int(arch.get("input_size", DEFAULT_INPUT_SIZE)),
            patch_size=int(arch.get("patch_size", DEFAULT_PATCH_SIZE)),
            **dict(arch.get("overrides") or {}),
        )
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{file}: the saved network configuration is invalid ({exc})") from None
    load_state_dict_checked(model, model.convert_state_dict(unwrap_state_dict(state)), str(file))
    model.eval()
    return model
