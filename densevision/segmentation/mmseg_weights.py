"""Released semantic segmentation checkpoints -> densevision segmenters, key by key.

Two upstream layouts are read:

- mmsegmentation (the Swin and AS-MLP segmentation repositories: ``{"meta", "state_dict", "optimizer"}``):
  ``backbone.*`` in the backbone's official layout; ``decode_head.*`` (``UPerHead``: ``psp_modules.{i}.1``,
  ``bottleneck``, ``lateral_convs.{i}``, ``fpn_convs.{i}``, ``fpn_bottleneck``; Semantic FPN: ``FPNHead``'s
  ``scale_heads.{i}.{j}`` with its ``neck.*`` ``FPN``) and ``conv_seg``; ``auxiliary_head.*`` (``FCNHead`` with one
  conv: ``convs.0``, ``conv_seg``). Every ``ConvModule`` holds ``conv`` and ``bn``; densevision's conv blocks are
  ``nn.Sequential`` (``0`` conv, ``1`` BN).
- HRNet-Semantic-Segmentation (``FullModel``: ``model.*``, or the bare network): the HRNet body in the official
  HRNet layout (the zoo's key names) and the HRNetV2 head ``last_layer.{0,1,3}``. ``loss.*`` holds the training
  criterion's class weights, not network weights, and is left out as upstream's own test script does.

Backbone layouts equal the zoo's except Swin's patch merging, which upstream keeps at the end of stage ``i``
(``layers.{i}.downsample``) and the zoo at the start of stage ``i + 1``; the index buffers the zoo rebuilds from
the window size (``relative_position_index``, ``attn_mask``) are left out. A densevision segmenter's own state
dict passes unchanged. The zoo's ImageNet loaders are not used here on purpose: they drop classifier keys and
keep fresh output norms, which is right for a backbone alone and would hide a missing tensor of a whole model.

Every other key must land on a tensor of the model with its shape: :func:`load_segmentation_weights` names each
missing, unexpected (in the checkpoint's own spelling) and mis-shaped key in one ``CheckpointError``.

Numerics: the Swin / AS-MLP UperNets use ``align_corners=False`` everywhere, as densevision does.
HRNet-Semantic-Segmentation resizes with ``align_corners=True`` (``MODEL.ALIGN_CORNERS``) and fuses branches
bilinearly: build its backbone with ``backbone_kwargs={"fuse_mode": "bilinear", "align_corners": True}``; the
head's concatenation and the final resize still use ``align_corners=False``, so outputs differ slightly.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping

import torch
from torch import nn

from densevision.models.checkpoint import load_state_dict_checked

Tensor = torch.Tensor

# mmsegmentation ConvModule prefix -> the densevision conv block it becomes (``conv`` -> ``0``, ``bn`` -> ``1``).
_CONV_MODULES = (
    (r"decode_head\.psp_modules\.(\d+)\.1\.", r"decode_head.psp_modules.convs.\1."),
    (r"decode_head\.(bottleneck|fpn_bottleneck)\.", r"decode_head.\1."),
    (r"decode_head\.(lateral_convs|fpn_convs)\.(\d+)\.", r"decode_head.\1.\2."),
    (r"decode_head\.scale_heads\.(\d+)\.(\d+)\.", r"decode_head.scale_heads.\1.\2."),
    (r"neck\.lateral_convs\.(\d+)\.", r"decode_head.fpn.inner_blocks.\1."),
    (r"neck\.fpn_convs\.(\d+)\.", r"decode_head.fpn.layer_blocks.\1."),
    (r"auxiliary_head\.convs\.0\.", "auxiliary_head.convs."),
)
_MMSEG_RULES = tuple(
    (re.compile(source + part + r"\."), target + index + ".")
    for source, target in _CONV_MODULES for part, index in (("conv", "0"), ("bn", "1"))
)
_REBUILT_BUFFERS = ("relative_position_index", "attn_mask")
_HRNET_HEAD = "last_layer."


def is_segmenter_state_dict(state: Mapping[str, Tensor]) -> bool:
    """Whether ``state`` holds a whole segmenter (mmsegmentation or densevision ``decode_head.*``,
    HRNet-Semantic-Segmentation ``[model.]last_layer.*``) rather than a backbone alone."""
    return any(k.startswith(("decode_head.", _HRNET_HEAD, "model." + _HRNET_HEAD)) for k in state)


def convert_segmentation_state_dict(model: nn.Module, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An mmsegmentation or HRNet-Semantic-Segmentation state dict in the key layout of ``model`` (a
    :class:`~densevision.segmentation.Segmenter`; see the module doc). A key that lands on no tensor of the model
    (or on one another key already took) keeps its checkpoint name, so the strict load names it as written."""
    own = model.state_dict()
    if any(k.startswith("model." + _HRNET_HEAD) for k in state):
        state = {k: v for k, v in state.items() if not k.startswith("loss.")}
        targets = {k: _hrnet_target(k.removeprefix("model.")) if k.startswith("model.") else k for k in state}
    elif any(k.startswith(_HRNET_HEAD) for k in state):
        targets = {k: _hrnet_target(k) for k in state}
    else:
        targets = {k: _mmseg_target(k) for k in state}
    inside = {k: t.removeprefix("backbone.") for k, t in targets.items() if t.startswith("backbone.")}
    out: dict[str, Tensor] = {}
    for key, target in {**targets, **_backbone_targets(own, inside)}.items():
        if target is not None:
            out[target if target in own and target not in out else key] = state[key]
    return out


def load_segmentation_weights(model: nn.Module, state: Mapping[str, Tensor], source: str) -> nn.Module:
    """Load an mmsegmentation / HRNet-Semantic-Segmentation / densevision segmenter state dict into ``model``,
    strictly: every missing, unexpected or mis-shaped key is named in one ``CheckpointError``."""
    load_state_dict_checked(model, convert_segmentation_state_dict(model, state), source)
    return model


def _mmseg_target(key: str) -> str:
    for pattern, target in _MMSEG_RULES:
        match = pattern.match(key)
        if match:
            return match.expand(target) + key[match.end():]
    return key


def _hrnet_target(key: str) -> str:
    return "decode_head." + key if key.startswith(_HRNET_HEAD) else "backbone." + key


def _backbone_targets(own: Collection[str], keys: Mapping[str, str]) -> dict[str, str | None]:
    """``{checkpoint key: key inside the backbone}`` -> ``{checkpoint key: key in ``own`` (the segmenter's),
    or None: left out}``.

    Index buffers the backbone rebuilds and does not hold are left out; patch merging kept at the end of stage
    ``i`` moves to the start of stage ``i + 1`` when the backbone holds it there.
    """
    merging = re.compile(r"^layers\.(\d+)\.downsample\.")
    shift = any(t.startswith("layers.0.downsample.") for t in keys.values()) and not any(
        k.startswith("backbone.layers.0.downsample.") for k in own)
    out: dict[str, str | None] = {}
    for key, target in keys.items():
        if shift:
            target = merging.sub(lambda m: f"layers.{int(m[1]) + 1}.downsample.", target)
        target = "backbone." + target
        out[key] = None if target not in own and target.endswith(_REBUILT_BUFFERS) else target
    return out
