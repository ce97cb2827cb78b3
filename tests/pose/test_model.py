"""Pose network builder: zoo pose networks and SimpleBaseline heads over zoo backbones, specs and reloading."""

from __future__ import annotations

import pytest
import torch

from densevision.errors import DenseVisionError
from densevision.pose.heads import SimpleBaselineHead, ViTPoseSimpleHead
from densevision.pose.model import build_pose_model
from tests.pose.conftest import TINY_BACKBONE, TINY_POSE_HRNET


def test_simple_baseline_head_upsamples_by_8() -> None:
    head = SimpleBaselineHead([8, 32], 5, channels=16)
    assert head([torch.randn(2, 8, 6, 4), torch.randn(2, 32, 3, 2)]).shape == (2, 5, 24, 16)
    deconvs = [m for m in head.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert [(d.kernel_size, d.stride, d.padding, d.bias) for d in deconvs] == [((4, 4), (2, 2), (1, 1), None)] * 3
    assert head.deconv_layers[0].out_channels == SimpleBaselineHead([32], 5).deconv_layers[0].out_channels // 16


def test_backbone_with_simple_head_gives_quarter_resolution_heatmaps() -> None:
    model = build_pose_model(num_joints=3, input_size=(64, 32), backbone="hrnet_w18_small",
                             overrides=TINY_BACKBONE).eval()
    assert model.heatmap_stride == 4 and model.heatmap_size == (16, 8)
    assert model(torch.rand(2, 3, 64, 32)).shape == (2, 3, 16, 8)
    with pytest.raises(DenseVisionError, match="multiples of the backbone's stride 32"):
        build_pose_model(num_joints=3, input_size=(64, 48), backbone="hrnet_w18_small", overrides=TINY_BACKBONE)


def test_backbone_with_hrnetv2_head_fuses_every_level_at_the_finest_stride() -> None:
    model = build_pose_model(num_joints=3, input_size=(64, 32), backbone="hrnet_w18_small", head="hrnetv2",
                             overrides=TINY_BACKBONE).eval()
    assert model.heatmap_stride == 4 and model(torch.rand(2, 3, 64, 32)).shape == (2, 3, 16, 8)
    body = model.network.body
    assert model.network.head.fuse[0].in_channels == sum(body.out_channels)


TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 64}


def test_vitpose_head_is_relu_bilinear_x4_then_a_3x3_conv() -> None:
    head = ViTPoseSimpleHead([16, 32], 5)
    x = torch.randn(2, 32, 4, 3)
    expected = head.final_layer(torch.nn.functional.interpolate(x.clamp(min=0), size=(16, 12), mode="bilinear"))
    assert torch.equal(head([torch.randn(2, 16, 8, 6), x]), expected)
    convs = [m for m in head.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size, c.padding) for c in convs] == [(32, 5, (3, 3), (1, 1))]


def test_vitpose_on_a_plain_vit_reads_only_its_stride_16_map() -> None:
    model = build_pose_model(num_joints=3, input_size=(64, 48), backbone="vit_tiny_patch16_224", head="vitpose",
                             overrides=TINY_VIT)
    body = model.network.body
    assert body.strides == [16] and body.out_channels == [32] and list(body.pyramid) == ["2"]
    assert model.heatmap_stride == 4 and model.heatmap_size == (16, 12)
    heatmaps = model(torch.rand(2, 3, 64, 48))
    assert heatmaps.shape == (2, 3, 16, 12)
    heatmaps.sum().backward()
    assert all(p.grad is not None for p in model.parameters())  # no parameter the head leaves unused
    with pytest.raises(DenseVisionError, match="16-pixel patches"):
        build_pose_model(num_joints=3, input_size=(64, 64), backbone="vit_small_patch32_224", head="vitpose",
                         overrides=TINY_VIT)


def test_pose_hrnet_model() -> None:
    model = build_pose_model(num_joints=4, input_size=(32, 24), model="pose_hrnet_w32",
                             overrides=TINY_POSE_HRNET).eval()
    assert model(torch.rand(1, 3, 32, 24)).shape == (1, 4, 8, 6)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one"),
    ({"model": "pose_hrnet_w32", "backbone": "hrnet_w18"}, "exactly one"),
    ({"model": "hrnet_w18"}, "not a pose network"),
    ({"backbone": "hrnet_w18", "head": "vitpose"}, "--head vitpose .* zoo ViT"),
    ({"backbone": "timm:vit_tiny_patch16_224", "head": "vitpose"}, "--head vitpose .* zoo ViT"),
    ({"backbone": "hrnet_w18", "head": "deconv"}, "--head deconv"),
])
def test_invalid_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(DenseVisionError, match=message):
        build_pose_model(num_joints=3, **kwargs)
