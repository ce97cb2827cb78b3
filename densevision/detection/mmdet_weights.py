"""mmdetection (2.x) Mask R-CNN and Cascade Mask R-CNN checkpoints -> densevision detectors.

The detection checkpoints of the Swin and AS-MLP repositories are mmdetection state dicts: ``backbone.*``,
``neck.*`` (``FPN``: ``lateral_convs`` / ``fpn_convs``; ``HRFPN`` for HRNet), ``rpn_head.rpn_{conv,cls,reg}``,
``roi_head.bbox_head[.{t}]`` (``Shared2FCBBoxHead``: ``shared_fcs.{0,1}``; ``Shared4Conv1FCBBoxHead``:
``shared_convs.{0..3}.{conv,bn}``, ``shared_fcs.0``; then ``fc_cls``, ``fc_reg``) and
``roi_head.mask_head[.{t}]`` (``FCNMaskHead``: ``convs.{0..3}.conv``, ``upsample``, ``conv_logits``).
:func:`convert_mmdet_state_dict` maps every key to exactly one key of a model built with the same structure
(:func:`~densevision.detection.build_mask_rcnn` with the same backbone, ``fpn_channels``, ``box_head``,
``box_head_dim``, ``mask_head_channels``, ``cascade_class_agnostic`` and number of classes); what does not
fit is reported by the strict load of :func:`load_mmdet_weights`.

Values change in two places only: mmdetection puts the background class last in ``fc_cls`` and has no
background in ``fc_reg`` (class-specific) or ``conv_logits``; torchvision puts it first, so ``fc_cls`` rows are
rotated and a zero background block is added to class-specific ``bbox_pred`` and to ``mask_fcn_logits``
(never read at inference: detections have labels ``>= 1``). Numerics still differ slightly from mmdetection:
torchvision's ``MultiScaleRoIAlign`` uses ``aligned=False`` and ``sampling_ratio`` 2, mmdetection 2.x
``aligned=True`` and adaptive sampling.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping

import torch
from torch import nn
from torchvision.models.detection.faster_rcnn import TwoMLPHead

from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint, unwrap_state_dict

Tensor = torch.Tensor


def convert_mmdet_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """An mmdetection Mask R-CNN / Cascade Mask R-CNN state dict in ``model``'s key layout (see the module doc).
    Keys no rule maps are kept unchanged, so a strict load names them."""
    out: dict[str, Tensor] = {}
    groups: dict[str, dict[str, Tensor]] = {"backbone": {}, "neck": {}, "rest": {}}
    for key, value in state_dict.items():
        head = key.split(".", 1)[0]
        groups[head if head in ("backbone", "neck") else "rest"][key] = value
    out.update(_prefixed("backbone.body.", _convert_part(model.backbone.body, groups["backbone"], "backbone.")))
    out.update(_prefixed("backbone.neck.", _convert_neck(model.backbone.neck, groups["neck"])))
    rules = _head_rules(model)
    for key, value in groups["rest"].items():
        for pattern, target, transform in rules:
            match = re.match(pattern, key)
            if match:
                out[match.expand(target) + key[match.end():]] = transform(value)
                break
        else:
            out[key] = value
    return out


def load_mmdet_weights(
    model: nn.Module, path: str | os.PathLike, *, trust_checkpoint: bool = False
) -> nn.Module:
    """Load an mmdetection checkpoint file (``{"state_dict": ...}`` or a bare state dict) into ``model``,
    strictly: every missing, unexpected or mis-shaped key is named in one ``CheckpointError``."""
    state = unwrap_state_dict(read_checkpoint(path, trust_checkpoint=trust_checkpoint))
    load_state_dict_checked(model, convert_mmdet_state_dict(model, state), str(path))
    return model


def _prefixed(prefix: str, state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {prefix + k: v for k, v in state.items()}


def _convert_part(module: nn.Module, state: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """A zoo body converts its own upstream layouts (``convert_state_dict`` accepts ``backbone.`` keys);
    other bodies take the keys with ``prefix`` removed."""
    if not state:
        return {}
    convert = getattr(module, "convert_state_dict", None)
    if convert is not None:
        return convert(dict(state))
    return {k[len(prefix):]: v for k, v in state.items()}


def _convert_neck(neck: nn.Module, state: dict[str, Tensor]) -> dict[str, Tensor]:
    if hasattr(neck, "convert_state_dict"):  # HRNetV2p reads mmdetection's HRFPN keys itself
        return _convert_part(neck, state, "neck.")
    out = {}
    for key, value in state.items():
        key = re.sub(r"^neck\.lateral_convs\.(\d+)\.conv\.", r"fpn.inner_blocks.\1.0.", key)
        out[re.sub(r"^neck\.fpn_convs\.(\d+)\.conv\.", r"fpn.layer_blocks.\1.0.", key)] = value
    return out


Rule = tuple[str, str, Callable[[Tensor], Tensor]]


def _same(value: Tensor) -> Tensor:
    return value


def _background_first(value: Tensor) -> Tensor:
    """``fc_cls`` rows ``[class 1..K, background]`` -> ``[background, class 1..K]``."""
    return torch.cat([value[-1:], value[:-1]])


def _add_background(width: int) -> Callable[[Tensor], Tensor]:
    """Prepend ``width`` zero rows (the background's block) to a class-specific output layer."""
    def convert(value: Tensor) -> Tensor:
        return torch.cat([value.new_zeros((width, *value.shape[1:])), value])
    return convert


def _head_rules(model: nn.Module) -> list[Rule]:
    """Regex rules ``(mmdetection prefix, our prefix, value transform)`` for the RPN and the RoI heads."""
    rules: list[Rule] = [
        (r"rpn_head\.rpn_conv\.", "rpn.head.conv.0.0.", _same),
        (r"rpn_head\.rpn_cls\.", "rpn.head.cls_logits.", _same),
        (r"rpn_head\.rpn_reg\.", "rpn.head.bbox_pred.", _same),
    ]
    heads = model.roi_heads
    if hasattr(heads, "box_heads"):  # the cascade: one head per stage
        stages = [(rf"roi_head\.bbox_head\.{t}\.", f"roi_heads.box_heads.{t}.", f"roi_heads.box_predictors.{t}.",
                   heads.box_heads[t], heads.box_predictors[t]) for t in range(len(heads.box_heads))]
        masks = [(rf"roi_head\.mask_head\.{t}\.", f"roi_heads.mask_heads.{t}.", f"roi_heads.mask_predictors.{t}.")
                 for t in range(len(heads.mask_heads))]
    else:
        stages = [(r"roi_head\.bbox_head\.", "roi_heads.box_head.", "roi_heads.box_predictor.", heads.box_head,
                   heads.box_predictor)]
        masks = [(r"roi_head\.mask_head\.", "roi_heads.mask_head.", "roi_heads.mask_predictor.")]
    for source, box_head, predictor, head, box_predictor in stages:
        if isinstance(head, TwoMLPHead):
            rules += [(source + r"shared_fcs\.0\.", box_head + "fc6.", _same),
                      (source + r"shared_fcs\.1\.", box_head + "fc7.", _same)]
        else:  # FastRCNNConvFCHead: conv blocks, Flatten, Linear, ReLU
            fc = next(i for i, m in enumerate(head) if isinstance(m, nn.Linear))
            rules += [(source + r"shared_convs\.(\d+)\.conv\.", box_head + r"\1.0.", _same),
                      (source + r"shared_convs\.(\d+)\.bn\.", box_head + r"\1.1.", _same),
                      (source + r"shared_fcs\.0\.", f"{box_head}{fc}.", _same)]
        agnostic = box_predictor.bbox_pred.out_features == 4
        rules += [(source + r"fc_cls\.", predictor + "cls_score.", _background_first),
                  (source + r"fc_reg\.", predictor + "bbox_pred.", _same if agnostic else _add_background(4))]
    for source, mask_head, predictor in masks:
        rules += [(source + r"convs\.(\d+)\.conv\.", mask_head + r"\1.0.", _same),
                  (source + r"upsample\.", predictor + "conv5_mask.", _same),
                  (source + r"conv_logits\.", predictor + "mask_fcn_logits.", _add_background(1))]
    return rules
