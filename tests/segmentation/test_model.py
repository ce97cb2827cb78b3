"""Segmenter heads and builder: the official UperNet sizes, shapes at any input size, export-friendly pooling."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from densevision.errors import DenseVisionError
from densevision.segmentation import build_segmenter
from densevision.segmentation.heads import _pool_matrix, adaptive_avg_pool2d

TINY = {"channels": 16, "fpn_channels": 16, "aux_channels": 8, "backbone_kwargs": {"width": 8}}


@pytest.mark.parametrize("name, millions", [
    ("swin_tiny_patch4_window7_224", 60), ("swin_small_patch4_window7_224", 81),
    ("swin_base_patch4_window7_224", 121),
])
def test_upernet_on_swin_has_the_official_parameter_count(name, millions):
    with torch.device("meta"):
        model = build_segmenter(name, "upernet", 150)
    assert model.auxiliary_head is not None
    assert round(sum(p.numel() for p in model.parameters()) / 1e6) == millions


@pytest.mark.parametrize("head", ["upernet", "fpn", "hrnetv2"])
@pytest.mark.parametrize("size", [(64, 64), (37, 53)])
def test_logits_have_the_input_size(head, size):
    model = build_segmenter("hrnet_w18_small", head, 5, **TINY)
    x = torch.rand(2, 3, *size)
    out = model(x, return_aux=True)
    assert out["seg"].shape == (2, 5, *size)
    assert ("aux" in out) == (head == "upernet")
    if head == "upernet":
        assert out["aux"].shape == (2, 5, *size)
    model.eval()
    labels = model.predict(x)
    assert labels.shape == (2, *size) and labels.dtype == torch.int64
    assert int(labels.max()) < 5


def test_timm_backbone_and_widths_from_declared_shapes():
    model = build_segmenter("timm:test_resnet", "fpn", 3, channels=8, fpn_channels=8)
    assert model.decode_head.fpn.inner_blocks[0][0].in_channels == model.backbone.out_channels[0]
    assert model(torch.rand(1, 3, 45, 61)).shape == (1, 3, 45, 61)


def test_plain_batchnorm_on_cpu():
    model = build_segmenter("hrnet_w18_small", "upernet", 4, **TINY)
    kinds = {type(m) for m in model.modules()}
    assert torch.nn.BatchNorm2d in kinds and torch.nn.SyncBatchNorm not in kinds


def test_bad_arguments_are_one_line_errors():
    with pytest.raises(DenseVisionError, match="unknown segmentation head 'psp'"):
        build_segmenter("hrnet_w18_small", "psp", 4, **TINY)
    with pytest.raises(DenseVisionError, match="2 class names"):
        build_segmenter("hrnet_w18_small", "fpn", 4, classes=["a", "b"], **TINY)


@pytest.mark.parametrize("h, w", [(7, 11), (13, 5), (1, 1), (6, 6), (2, 9)])
def test_pooling_matrices_equal_adaptive_pooling(h, w):
    x = torch.randn(2, 3, h, w)
    for bins in (1, 2, 3, 6):
        got = _pool_matrix(h, bins, x) @ x @ _pool_matrix(w, bins, x).T
        torch.testing.assert_close(got, F.adaptive_avg_pool2d(x, bins), atol=1e-6, rtol=1e-5)
    assert torch.equal(adaptive_avg_pool2d(x, 3), F.adaptive_avg_pool2d(x, 3))  # eager path unchanged


def test_backbone_starts_from_a_detector_checkpoint(tmp_path):
    """The ``backbone.body.*`` tensors of another model's checkpoint (fp16, as shipped) initialise the backbone;
    the head keeps its own initialisation; missing or mis-shaped tensors are one clear error."""
    from densevision.errors import CheckpointError
    from densevision.segmentation import init_backbone_from

    donor = build_segmenter("hrnet_w18_small", "fpn", 3, **TINY)
    state = {f"backbone.body.{k}": v.half() if v.is_floating_point() else v
             for k, v in donor.backbone.state_dict().items()}
    state["rpn.head.conv.weight"] = torch.zeros(4, 4, 3, 3)
    torch.save({"model": state}, tmp_path / "detector.pt")

    model = build_segmenter("hrnet_w18_small", "fpn", 5, **TINY)
    head_before = {k: v.clone() for k, v in model.decode_head.state_dict().items()}
    init_backbone_from(model, tmp_path / "detector.pt")
    for k, v in model.backbone.state_dict().items():
        assert v.dtype == donor.backbone.state_dict()[k].dtype
        torch.testing.assert_close(v.float(), state[f"backbone.body.{k}"].float())
    assert all(torch.equal(v, head_before[k]) for k, v in model.decode_head.state_dict().items())

    with pytest.raises(CheckpointError, match="no tensors under 'neck.'"):
        init_backbone_from(model, tmp_path / "detector.pt", prefix="neck.")
    wider = build_segmenter("hrnet_w18_small", "fpn", 5, **{**TINY, "backbone_kwargs": {"width": 16}})
    with pytest.raises(CheckpointError, match="shape mismatch"):
        init_backbone_from(wider, tmp_path / "detector.pt")
