"""Pose network builder: zoo pose networks and SimpleBaseline heads over zoo backbones, specs and reloading."""

from __future__ import annotations

import pytest
import torch

from densevision.errors import DenseVisionError
from densevision.pose.heads import SimpleBaselineHead
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


def test_pose_hrnet_model() -> None:
    model = build_pose_model(num_joints=4, input_size=(32, 24), model="pose_hrnet_w32",
                             overrides=TINY_POSE_HRNET).eval()
    assert model(torch.rand(1, 3, 32, 24)).shape == (1, 4, 8, 6)
    assert torch.allclose(model.mean.flatten(), torch.tensor([0.485, 0.456, 0.406]))


@pytest.mark.parametrize(("kwargs", "message"), [
    ({}, "exactly one"),
    ({"model": "pose_hrnet_w32", "backbone": "hrnet_w18"}, "exactly one"),
    ({"model": "hrnet_w18"}, "not a pose network"),
    ({"backbone": "hrnet_w18", "head": "vitpose"}, "--head vitpose"),
])
def test_invalid_choices(kwargs: dict, message: str) -> None:
    with pytest.raises(DenseVisionError, match=message):
        build_pose_model(num_joints=3, **kwargs)
