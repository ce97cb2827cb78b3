"""mmdetection Mask R-CNN / Cascade Mask R-CNN state dicts (Swin / AS-MLP detection repos' layout) load exactly."""

from __future__ import annotations

import re

import pytest
import torch

from densevision.detection import build_mask_rcnn
from densevision.detection.mmdet_weights import convert_mmdet_state_dict, load_mmdet_weights
from densevision.errors import CheckpointError

SWIN = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}
HEADS = {"fpn_channels": 16, "box_head_dim": 32, "mask_head_channels": 8, "min_size": 64, "max_size": 96}
K = 3  # categories


def _random(shape: torch.Size, generator: torch.Generator) -> torch.Tensor:
    return torch.randn(shape, generator=generator)


def _swin_backbone(model, generator) -> dict[str, torch.Tensor]:
    """The body's weights in the official Swin layout (``layers.N.downsample`` closes stage N)."""
    out = {}
    for key, value in model.backbone.body.state_dict().items():
        key = re.sub(r"^layers\.(\d+)\.downsample\.", lambda m: f"layers.{int(m[1]) - 1}.downsample.", key)
        out[f"backbone.{key}"] = _random(value.shape, generator)
    return out


def _mmdet_heads(stages: list[str], masks: list[str], *, convs: bool, agnostic: bool, c: int, dim: int, mc: int,
                 generator) -> dict[str, torch.Tensor]:
    """Neck, RPN and RoI heads named and shaped as mmdetection 2.x writes them."""
    g = generator
    out = {"rpn_head.rpn_conv.weight": _random((c, c, 3, 3), g), "rpn_head.rpn_conv.bias": _random((c,), g),
            "rpn_head.rpn_cls.weight": _random((3, c, 1, 1), g), "rpn_head.rpn_cls.bias": _random((3,), g),
            "rpn_head.rpn_reg.weight": _random((12, c, 1, 1), g), "rpn_head.rpn_reg.bias": _random((12,), g)}
    for p in stages:
        if convs:
            for i in range(4):
                out[f"{p}shared_convs.{i}.conv.weight"] = _random((c, c, 3, 3), g)
                for name in ("weight", "bias", "running_mean"):
                    out[f"{p}shared_convs.{i}.bn.{name}"] = _random((c,), g)
                out[f"{p}shared_convs.{i}.bn.running_var"] = torch.rand((c,), generator=g) + 0.5
                out[f"{p}shared_convs.{i}.bn.num_batches_tracked"] = torch.tensor(7)
            fcs = [(dim, c * 49)]
        else:
            fcs = [(dim, c * 49), (dim, dim)]
        for i, shape in enumerate(fcs):
            out[f"{p}shared_fcs.{i}.weight"], out[f"{p}shared_fcs.{i}.bias"] = _random(shape, g), _random(shape[:1], g)
        reg = 4 if agnostic else 4 * K
        out |= {f"{p}fc_cls.weight": _random((K + 1, dim), g), f"{p}fc_cls.bias": _random((K + 1,), g),
                f"{p}fc_reg.weight": _random((reg, dim), g), f"{p}fc_reg.bias": _random((reg,), g)}
    for p in masks:
        for i in range(4):
            out[f"{p}convs.{i}.conv.weight"] = _random((mc, c if i == 0 else mc, 3, 3), g)
            out[f"{p}convs.{i}.conv.bias"] = _random((mc,), g)
        out |= {f"{p}upsample.weight": _random((mc, mc, 2, 2), g), f"{p}upsample.bias": _random((mc,), g),
                f"{p}conv_logits.weight": _random((K, mc, 1, 1), g), f"{p}conv_logits.bias": _random((K,), g)}
    return out


def _fpn(model, generator) -> dict[str, torch.Tensor]:
    out = {}
    for key, value in model.backbone.neck.state_dict().items():
        kind, level, rest = re.match(r"fpn\.(inner|layer)_blocks\.(\d+)\.0\.(.*)", key).groups()
        name = "lateral_convs" if kind == "inner" else "fpn_convs"
        out[f"neck.{name}.{level}.conv.{rest}"] = _random(value.shape, generator)
    return out


def _check_loaded(model, mmdet, pairs) -> None:
    own = model.state_dict()
    for ours, theirs in pairs.items():
        assert torch.equal(own[ours], mmdet[theirs]), ours


def test_cascade_swin_4conv1fc_checkpoint_loads_exactly(tmp_path):
    model = build_mask_rcnn("swin_tiny_patch4_window7_224", K, backbone_kwargs=SWIN, detector="cascade_mask_rcnn",
                            box_head="4conv1fc", cascade_class_agnostic=False, cascade_box_loss="giou", **HEADS)
    g = torch.Generator().manual_seed(0)
    stages = [f"roi_head.bbox_head.{t}." for t in range(3)]
    masks = [f"roi_head.mask_head.{t}." for t in range(3)]
    mmdet = {**_swin_backbone(model, g), **_fpn(model, g),
             **_mmdet_heads(stages, masks, convs=True, agnostic=False, c=16, dim=32, mc=8, generator=g)}
    converted = convert_mmdet_state_dict(model, mmdet)
    assert len(converted) == len(mmdet) == len(model.state_dict())
    torch.save({"meta": {"mmdet_version": "2.11.0"}, "state_dict": mmdet}, tmp_path / "cascade.pth")
    load_mmdet_weights(model, tmp_path / "cascade.pth")
    _check_loaded(model, mmdet, {
        "backbone.body.layers.1.downsample.reduction.weight": "backbone.layers.0.downsample.reduction.weight",
        "backbone.neck.fpn.inner_blocks.2.0.weight": "neck.lateral_convs.2.conv.weight",
        "rpn.head.conv.0.0.weight": "rpn_head.rpn_conv.weight",
        "rpn.head.cls_logits.weight": "rpn_head.rpn_cls.weight",
        "roi_heads.box_heads.2.3.1.running_var": "roi_head.bbox_head.2.shared_convs.3.bn.running_var",
        "roi_heads.box_heads.1.5.weight": "roi_head.bbox_head.1.shared_fcs.0.weight",
        "roi_heads.mask_heads.2.0.0.weight": "roi_head.mask_head.2.convs.0.conv.weight",
        "roi_heads.mask_predictors.1.conv5_mask.weight": "roi_head.mask_head.1.upsample.weight",
    })
    heads, own = model.roi_heads, mmdet
    cls = own["roi_head.bbox_head.2.fc_cls.weight"]
    assert torch.equal(heads.box_predictors[2].cls_score.weight[0], cls[K])  # background moves first
    assert torch.equal(heads.box_predictors[2].cls_score.weight[1:], cls[:K])
    reg = heads.box_predictors[0].bbox_pred.weight
    assert torch.equal(reg[4:], own["roi_head.bbox_head.0.fc_reg.weight"]) and not reg[:4].any()
    logits = heads.mask_predictors[0].mask_fcn_logits.weight
    assert torch.equal(logits[1:], own["roi_head.mask_head.0.conv_logits.weight"]) and not logits[0].any()
    model.eval()
    with torch.no_grad():
        out = model([torch.rand(3, 64, 64)])[0]
    assert torch.isfinite(out["boxes"]).all()


def test_mask_rcnn_checkpoint_loads_exactly():
    model = build_mask_rcnn("swin_tiny_patch4_window7_224", K, backbone_kwargs=SWIN, **HEADS)
    g = torch.Generator().manual_seed(1)
    mmdet = {**_swin_backbone(model, g), **_fpn(model, g),
             **_mmdet_heads(["roi_head.bbox_head."], ["roi_head.mask_head."], convs=False, agnostic=False, c=16,
                            dim=32, mc=8, generator=g)}
    model.load_state_dict(convert_mmdet_state_dict(model, mmdet), strict=True)
    _check_loaded(model, mmdet, {"roi_heads.box_head.fc6.weight": "roi_head.bbox_head.shared_fcs.0.weight",
                                 "roi_heads.box_head.fc7.bias": "roi_head.bbox_head.shared_fcs.1.bias",
                                 "rpn.head.bbox_pred.bias": "rpn_head.rpn_reg.bias"})
    assert torch.equal(model.roi_heads.box_predictor.bbox_pred.bias[4:], mmdet["roi_head.bbox_head.fc_reg.bias"])


def test_class_agnostic_cascade_and_mismatches_are_named(tmp_path):
    model = build_mask_rcnn("swin_tiny_patch4_window7_224", K, backbone_kwargs=SWIN, detector="cascade_mask_rcnn",
                            **HEADS)
    g = torch.Generator().manual_seed(2)
    stages = [f"roi_head.bbox_head.{t}." for t in range(3)]
    masks = [f"roi_head.mask_head.{t}." for t in range(3)]
    mmdet = {**_swin_backbone(model, g), **_fpn(model, g),
             **_mmdet_heads(stages, masks, convs=False, agnostic=True, c=16, dim=32, mc=8, generator=g)}
    model.load_state_dict(convert_mmdet_state_dict(model, mmdet), strict=True)
    assert torch.equal(model.roi_heads.box_predictors[1].bbox_pred.weight, mmdet["roi_head.bbox_head.1.fc_reg.weight"])
    mmdet["roi_head.bbox_head.3.fc_cls.weight"] = torch.zeros(K + 1, 32)
    with pytest.raises(CheckpointError, match=r"unexpected keys: roi_head\.bbox_head\.3\.fc_cls\.weight"):
        load_mmdet_weights(model, _saved(tmp_path / "extra.pth", mmdet))
    single = build_mask_rcnn("swin_tiny_patch4_window7_224", K, backbone_kwargs=SWIN, detector="cascade_mask_rcnn",
                             cascade_mask_heads="final", **HEADS)
    del mmdet["roi_head.bbox_head.3.fc_cls.weight"]
    with pytest.raises(CheckpointError, match=r"unexpected keys: roi_head\.mask_head\.1\."):
        load_mmdet_weights(single, _saved(tmp_path / "per_stage.pth", mmdet))


def _saved(path, state):
    torch.save({"state_dict": state}, path)
    return path
