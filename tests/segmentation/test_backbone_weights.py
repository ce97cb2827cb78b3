"""The segmenter's backbone-weights setting: ``auto`` (offline and not cached here: from scratch; not consulted
with ``backbone_init``), ``none``, a path."""

from __future__ import annotations

from pathlib import Path

import torch

from densevision.models import create_model
from densevision.segmentation.config import SegmenterConfig, SegTrainConfig
from densevision.segmentation.train import SegTask

BACKBONE = "hrnet_w18_small"
TINY = {"width": 8}


def build(**model: object) -> torch.nn.Module:
    task = SegTask(SegTrainConfig(model=SegmenterConfig(backbone=BACKBONE, head="fpn", channels=8, fpn_channels=8,
                                                        **model)))
    task.classes = ["a", "b", "c"]
    return task.build_model()


def test_default_auto_offline_trains_from_scratch(capsys) -> None:
    assert SegTrainConfig().model.backbone_weights == "auto"
    build(backbone_kwargs=TINY)
    assert "do not fit the overrides width" in capsys.readouterr().err
    build()
    assert "DENSEVISION_OFFLINE=1" in capsys.readouterr().err


def test_path_none_and_backbone_init(tmp_path: Path, capsys) -> None:
    classifier = create_model(BACKBONE, **TINY)
    torch.save(classifier.state_dict(), tmp_path / "cls.pth")
    model = build(backbone_kwargs=TINY, backbone_weights=str(tmp_path / "cls.pth"))
    assert torch.equal(model.backbone.conv1.weight, classifier.conv1.weight)
    build(backbone_kwargs=TINY, backbone_weights="none")
    assert "training from scratch (backbone weights: none)" in capsys.readouterr().err

    torch.save({"model": {f"backbone.body.{k}": v for k, v in classifier.state_dict().items()
                          if k in model.backbone.state_dict()}}, tmp_path / "detector.pt")
    initialised = build(backbone_kwargs=TINY, backbone_init=str(tmp_path / "detector.pt"))
    assert torch.equal(initialised.backbone.conv1.weight, classifier.conv1.weight)
    assert capsys.readouterr().err == ""  # auto fetches nothing when --backbone-init gives the backbone
