"""The segmenter's backbone-weights setting: ``auto`` (offline and not cached here: from scratch; not consulted
with ``backbone_init``), ``none``, a path; and ``weights``, a whole segmenter to start from."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from densevision.errors import CheckpointError, DenseVisionError
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


def test_whole_segmenter_weights_load_heads_too(tmp_path: Path, capsys) -> None:
    trained = build(backbone_kwargs=TINY, backbone_weights="none")
    for p in trained.parameters():
        torch.nn.init.normal_(p)
    torch.save({"model": trained.state_dict()}, tmp_path / "seg.pt")
    capsys.readouterr()
    (tmp_path / "run").mkdir()
    torch.save({"model": trained.state_dict()}, tmp_path / "run" / "last.pt")
    for weights in (tmp_path / "seg.pt", tmp_path / "run"):
        model = build(backbone_kwargs=TINY, weights=str(weights))
        assert capsys.readouterr().err == ""  # auto fetches no ImageNet weights under --weights
        for key, value in trained.state_dict().items():
            assert torch.equal(model.state_dict()[key], value), key

    torch.save(create_model(BACKBONE, **TINY).state_dict(), tmp_path / "cls.pth")
    with pytest.raises(CheckpointError, match="cls.pth: holds no whole segmenter.*--backbone-weights"):
        build(backbone_kwargs=TINY, weights=str(tmp_path / "cls.pth"))
    with pytest.raises(DenseVisionError, match="not both"):
        build(backbone_kwargs=TINY, weights=str(tmp_path / "seg.pt"), backbone_weights=str(tmp_path / "cls.pth"))
