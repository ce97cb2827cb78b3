"""``pose predict --detector``: detection then pose in one command on a folder without annotations, equal to
``detect predict`` followed by ``pose predict --boxes``; the category check between the two networks; ``--viz``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from densevision.cli import main
from densevision.data.images import read_image
from densevision.data.keypoints import KeypointLayout
from densevision.data.synthetic import CATEGORIES, generate_split, keypoint_categories
from densevision.detection.mask_rcnn import build_mask_rcnn
from densevision.detection.predict import DetectorInfo
from densevision.engine.checkpoint import MODEL_SPEC, model_spec
from densevision.errors import DataError
from densevision.io import save_torch
from densevision.pipelines import check_shared_categories
from densevision.pose.model import build_pose_model, pose_model_spec
from tests.api.conftest import TINY_DETECTOR
from tests.pose.conftest import TINY_POSE_HRNET

POSE_CATEGORIES = keypoint_categories()[:2]  # triangle and square: the detector also finds the other shapes


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    """Two synthetic 96² images (no annotation file used), a tiny random detector of the five shapes and a tiny
    random pose network of two of them."""
    root = tmp_path_factory.mktemp("pipeline")
    generate_split(root, "val", 2, size=96, seed=5, progress=False)
    torch.manual_seed(0)
    detector = build_mask_rcnn("timm:mobilenetv3_small_050", num_classes=len(CATEGORIES), **TINY_DETECTOR)
    with torch.no_grad():  # the random detector finds triangles, squares and stars
        detector.roi_heads.box_predictor.cls_score.weight.mul_(0.1)
        detector.roi_heads.box_predictor.cls_score.bias.copy_(torch.tensor([0.0, 1.0, 1.0, 1.0, 0.0, 0.0]))
    categories = [{"id": c["id"], "name": c["name"]} for c in CATEGORIES]
    save_torch(root / "detector.pt", {"model": detector.state_dict(), MODEL_SPEC: model_spec(
        "mask_rcnn", detector.config, {"categories": categories})})
    layout = KeypointLayout(POSE_CATEGORIES)
    config = {"input_size": (32, 24), "model": "pose_hrnet_w32", "backbone": None, "head": "simple",
              "overrides": dict(TINY_POSE_HRNET)}
    pose = build_pose_model(num_joints=layout.num_joints, **config)
    torch.nn.init.constant_(pose.network.final_layer.bias, 1.0)  # heatmap maxima above 0.2: non-zero scores
    save_torch(root / "pose.pt", {"model": pose.state_dict(), MODEL_SPEC: pose_model_spec(
        config, num_joints=layout.num_joints, meta={"categories": layout.to_meta()})})
    return {"images": root / "val", "detector": root / "detector.pt", "pose": root / "pose.pt", "root": root}


def test_detector_then_pose_equals_detect_predict_then_boxes(files, capsys) -> None:
    root = files["root"]
    common = ["--checkpoint", str(files["pose"]), "--images", str(files["images"]), "--device", "cpu"]
    assert main(["pose", "predict", *common, "--detector", str(files["detector"]), "--min-box-score", "0.01",
                 "--out", str(root / "chained.json"), "--viz", str(root / "viz"), "--viz-score-thr", "0"]) == 0
    assert "boxes of the pose network's categories" in capsys.readouterr().out
    chained = json.loads((root / "chained.json").read_text())
    assert main(["detect", "predict", "--checkpoint", str(files["detector"]), "--images", str(files["images"]),
                 "--out", str(root / "boxes.json"), "--device", "cpu", "--no-progress"]) == 0
    boxes = json.loads((root / "boxes.json").read_text())
    assert main(["pose", "predict", *common, "--boxes", str(root / "boxes.json"), "--min-box-score", "0.01",
                 "--out", str(root / "two_steps.json")]) == 0
    assert chained == json.loads((root / "two_steps.json").read_text())
    mine = [b for b in boxes if b["category_id"] in (1, 2) and b["score"] >= 0.01]
    assert {b["category_id"] for b in boxes} - {1, 2}  # boxes of other categories were left out
    assert chained and len(chained) <= len(mine) and {r["category_id"] for r in chained} <= {1, 2}
    assert {r["image_id"] for r in chained} <= {1, 2}
    sizes = {1: 3, 2: 4}
    assert all(len(r["keypoints"]) == 3 * sizes[r["category_id"]] for r in chained)
    drawn = sorted(p.name for p in (root / "viz").iterdir())
    assert drawn == ["000001.png", "000002.png"]
    assert not np.array_equal(read_image(root / "viz" / "000001.png"), read_image(files["images"] / "000001.png"))


def test_categories_are_matched_by_id_and_name() -> None:
    layout = KeypointLayout(POSE_CATEGORIES)
    info = DetectorInfo(model={}, categories=[{"id": 2, "name": "Square"}, {"id": 7, "name": "kite"}])
    assert check_shared_categories(info, layout, "det.pt") == [2]
    clash = DetectorInfo(model={}, categories=[{"id": 1, "name": "person"}, {"id": 2, "name": "square"}])
    with pytest.raises(DataError, match="det.pt: category 1 is 'person' for the detector, 'triangle' for the pose"):
        check_shared_categories(clash, layout, "det.pt")
    none = DetectorInfo(model={}, categories=[{"id": 7, "name": "kite"}])
    with pytest.raises(DataError, match=r"\(7 \(kite\)\) include none of the pose network's \(1 \(triangle\), 2"):
        check_shared_categories(none, layout, "det.pt")


def test_detector_that_is_not_a_detector_is_a_one_line_error(files, capsys) -> None:
    assert main(["pose", "predict", "--checkpoint", str(files["pose"]), "--images", str(files["images"]),
                 "--detector", str(files["pose"]), "--out", str(files["root"] / "x.json"), "--device", "cpu"]) == 2
    assert "not a densevision Mask R-CNN checkpoint" in capsys.readouterr().err
    assert not (files["root"] / "x.json").exists()
