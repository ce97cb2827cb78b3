"""The detector's backbone-weights setting: ``auto`` (ImageNet weights when cached, here offline), ``none``, a
path; the builder's keyword default and the model spec start without weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from densevision.data.synthetic import generate
from densevision.detection import build_mask_rcnn
from densevision.detection.config import DetectionDataConfig, DetectorTrainConfig, MaskRCNNConfig
from densevision.detection.train import data_layout, train_detector
from densevision.engine import TrainConfig
from densevision.models import create_model
from densevision.models.registry import get_pretrained_cfg
from tests.models.test_pretrained import fake_hub_cache

BACKBONE = "hrnet_w18_small"
TINY = {"width": 8, "stage1_planes": 8, "num_blocks": (1, 1, 1)}
HEADS = {"fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16}


@pytest.fixture
def hub_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    return tmp_path / "hub"


def test_training_default_is_auto_builder_default_is_no_weights(capsys) -> None:
    assert DetectorTrainConfig().model.backbone_weights == "auto"
    model = build_mask_rcnn(BACKBONE, 2, backbone_kwargs=TINY, **HEADS)
    assert model.config["frozen_bn"] is False and "backbone_weights" not in model.config
    build_mask_rcnn(**model.config)
    assert capsys.readouterr().err == ""


def test_auto_uses_cached_imagenet_weights_else_trains_from_scratch(hub_cache: Path, capsys) -> None:
    config = MaskRCNNConfig(backbone=BACKBONE, **HEADS)
    scratch = build_mask_rcnn(config, 2)
    assert scratch.config["frozen_bn"] is False
    line = capsys.readouterr().err.strip()
    assert line.startswith(f"backbone {BACKBONE}: training from scratch") and "DENSEVISION_OFFLINE=1" in line

    classifier = create_model(BACKBONE)
    fake_hub_cache(hub_cache, get_pretrained_cfg(BACKBONE)["hf_hub_id"], classifier.state_dict())
    model = build_mask_rcnn(config, 2)
    assert model.config["frozen_bn"] is True
    assert torch.equal(model.backbone.body.conv1.weight, classifier.conv1.weight)
    assert f"backbone {BACKBONE}: ImageNet weights hf-hub:" in capsys.readouterr().err


def test_none_and_path(tmp_path: Path, hub_cache: Path, capsys) -> None:
    classifier = create_model(BACKBONE, **TINY)
    torch.save(classifier.state_dict(), tmp_path / "cls.pth")
    loaded = build_mask_rcnn(MaskRCNNConfig(backbone=BACKBONE, backbone_kwargs=TINY,
                                            backbone_weights=str(tmp_path / "cls.pth"), **HEADS), 2)
    assert torch.equal(loaded.backbone.body.conv1.weight, classifier.conv1.weight)
    assert loaded.config["frozen_bn"] is True
    scratch = build_mask_rcnn(MaskRCNNConfig(backbone=BACKBONE, backbone_kwargs=TINY, backbone_weights="none",
                                             **HEADS), 2)
    assert scratch.config["frozen_bn"] is False
    err = capsys.readouterr().err
    assert f"weights from {tmp_path / 'cls.pth'}" in err and "(backbone weights: none)" in err


def test_the_run_log_says_which(tmp_path: Path) -> None:
    generate(tmp_path / "data", train=2, val=0, size=64, seed=0, progress=False)
    data = DetectionDataConfig(**{k: None if v is None else str(v) for k, v in data_layout(tmp_path / "data").items()})
    config = DetectorTrainConfig(data=data, model=MaskRCNNConfig(backbone=BACKBONE, backbone_kwargs=TINY, **HEADS),
                                 train=TrainConfig(iters=1, batch_size=2, warmup_iters=0))
    train_detector(config, tmp_path / "run", device="cpu", progress=False)
    log = (tmp_path / "run" / "log.txt").read_text().splitlines()
    assert f"backbone {BACKBONE}: training from scratch (its ImageNet weights do not fit the overrides" in log[0]
