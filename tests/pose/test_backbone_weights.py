"""The pose network's backbone-weights setting: the HRNet body of a pose HRNet or a backbone under a heatmap
head starts from ``auto`` (offline and not cached here: from scratch), ``none`` or a path; ``--weights`` wins."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from densevision.errors import DenseVisionError
from densevision.models import create_model
from densevision.pose.config import PoseNetConfig, PoseTrainConfig
from densevision.pose.train import PoseTask
from tests.pose.conftest import TINY_BACKBONE, TINY_POSE_HRNET


def build(**model: object) -> torch.nn.Module:
    task = PoseTask(PoseTrainConfig(model=PoseNetConfig(input_size=[64, 32], **model)))
    task.layout = SimpleNamespace(num_joints=3)
    return task.build_model()


def test_default_auto(capsys) -> None:
    assert PoseTrainConfig().model.backbone_weights == "auto"
    build(model="pose_hrnet_w32", overrides=TINY_POSE_HRNET)
    assert "backbone hrnet_w32: training from scratch" in capsys.readouterr().err
    build(model="pose_hrnet_w32")
    assert "DENSEVISION_OFFLINE=1" in capsys.readouterr().err


def test_body_of_a_pose_hrnet_from_a_classifier(tmp_path: Path) -> None:
    classifier = create_model("hrnet_w32", **TINY_POSE_HRNET)
    torch.save(classifier.state_dict(), tmp_path / "cls.pth")
    model = build(model="pose_hrnet_w32", overrides=TINY_POSE_HRNET, backbone_weights=str(tmp_path / "cls.pth"))
    assert torch.equal(model.network.conv1.weight, classifier.conv1.weight)
    with pytest.raises(DenseVisionError, match="not both"):
        build(model="pose_hrnet_w32", weights=str(tmp_path / "pose.pth"), backbone_weights=str(tmp_path / "cls.pth"))


def test_backbone_under_a_head(tmp_path: Path, capsys) -> None:
    classifier = create_model("hrnet_w18_small", **TINY_BACKBONE)
    torch.save(classifier.state_dict(), tmp_path / "cls.pth")
    model = build(backbone="hrnet_w18_small", overrides=TINY_BACKBONE, backbone_weights=str(tmp_path / "cls.pth"))
    assert torch.equal(model.network.body.conv1.weight, classifier.conv1.weight)
    via_weights = build(backbone="hrnet_w18_small", overrides=TINY_BACKBONE, weights=str(tmp_path / "cls.pth"))
    assert torch.equal(via_weights.network.body.conv1.weight, classifier.conv1.weight)
    build(backbone="hrnet_w18_small", overrides=TINY_BACKBONE, backbone_weights="none")
    assert "(backbone weights: none)" in capsys.readouterr().err


def test_whole_network_from_a_pose_checkpoint_at_another_input_size(tmp_path: Path) -> None:
    trained = build(backbone="hrnet_w18_small", head="hrnetv2", overrides=TINY_BACKBONE, backbone_weights="none")
    torch.save({"model": trained.state_dict()}, tmp_path / "pose.pt")
    task = PoseTask(PoseTrainConfig(model=PoseNetConfig(
        backbone="hrnet_w18_small", head="hrnetv2", overrides=TINY_BACKBONE, input_size=[96, 96],
        init=str(tmp_path / "pose.pt"))))
    task.layout = SimpleNamespace(num_joints=3)
    finetuned = task.build_model()
    assert finetuned.input_size == (96, 96)
    for name, tensor in trained.state_dict().items():
        assert torch.equal(finetuned.state_dict()[name], tensor), name
    with pytest.raises(DenseVisionError, match="--init starts the whole network"):
        build(backbone="hrnet_w18_small", overrides=TINY_BACKBONE, init=str(tmp_path / "pose.pt"),
              backbone_init=str(tmp_path / "pose.pt"))
    with pytest.raises(DenseVisionError, match="--init starts the whole network"):
        build(backbone="hrnet_w18_small", overrides=TINY_BACKBONE, init=str(tmp_path / "pose.pt"),
              backbone_weights=str(tmp_path / "pose.pt"))
