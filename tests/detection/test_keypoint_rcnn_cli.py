"""``detect train --detector keypoint_rcnn`` -> ``detect predict`` -> ``eval --iou-types keypoints`` on the synthetic
keypoint data (five categories with 3, 4 or 5 keypoints, stacked into 20 channels)."""

from __future__ import annotations

import json

import pytest
import torch

from densevision.cli import main
from densevision.data.synthetic import generate
from densevision.detection.predict import export_detector, load_detector
from densevision.errors import CheckpointError

TINY = [f"--set=model.{key}={value}" for key, value in {
    "fpn_channels": 16, "box_head_dim": 16, "rois_per_image": 16, "rpn_pre_nms_top_n_train": 50,
    "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20,
    "box_detections_per_img": 8, "box_score_thresh": 0.0, "keypoint_head_channels": 8, "keypoint_head_layers": 2,
}.items()]
KEYPOINT_COUNTS = {1: 3, 2: 4, 3: 5, 4: 4, 5: 4}  # the synthetic categories' keypoints


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("keypoint_rcnn_cli")
    generate(root / "data", train=3, val=2, size=64, seed=1, progress=False)
    code = main(["detect", "train", "--detector", "keypoint_rcnn", "--data", str(root / "data"),
                 "--backbone", "timm:mobilenetv3_small_050", "--out", str(root / "run"), "--iters", "3",
                 "--batch-size", "2", "--lr", "0.01", "--warmup-iters", "1", "--eval-every", "3", "--device", "cpu",
                 "--no-tensorboard", "--no-progress", *TINY])
    assert code == 0
    return root


def test_checkpoint_keeps_the_keypoint_layout(trained):
    spec = torch.load(trained / "run" / "last.pt", weights_only=True)["model_spec"]
    assert spec["builder"] == "mask_rcnn" and spec["config"]["detector"] == "keypoint_rcnn"
    assert spec["config"]["num_keypoints"] == sum(KEYPOINT_COUNTS.values()) == 20
    assert [len(c["keypoints"]) for c in spec["meta"]["keypoints"]] == list(KEYPOINT_COUNTS.values())
    model, info = load_detector(trained / "run")
    assert model.roi_heads.has_keypoint() and not model.roi_heads.has_mask()
    assert info.keypoint_channels == {1: slice(0, 3), 2: slice(3, 7), 3: slice(7, 12), 4: slice(12, 16),
                                      5: slice(16, 20)}
    metrics = json.loads((trained / "run" / "metrics.json").read_text())
    assert "keypoints/AP" in json.dumps(metrics) and "segm/AP" not in json.dumps(metrics)
    assert "keypoints" in json.loads((trained / "run" / "eval" / "coco_metrics.json").read_text())


def test_predict_and_evaluate(trained, capsys):
    data, out = trained / "data", trained / "out"
    val_json = data / "annotations" / "instances_val.json"
    assert main(["detect", "predict", "--checkpoint", str(trained / "run"), "--images", str(data / "val"),
                 "--ann", str(val_json), "--out", str(out / "results.json"), "--device", "cpu", "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results
    for r in results:
        assert len(r["bbox"]) == 4 and "segmentation" not in r
        assert len(r["keypoints"]) == 3 * KEYPOINT_COUNTS[r["category_id"]]
    capsys.readouterr()
    assert main(["eval", "--gt", str(val_json), "--results", str(out / "results.json"), "--iou-types", "bbox",
                 "keypoints", "--out", str(out / "metrics.json")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["keypoints"]["AP"] <= 100.0 and 0.0 <= metrics["bbox"]["AP"] <= 100.0


def test_export_keeps_the_layout_and_a_broken_layout_is_refused(trained, tmp_path):
    exported = export_detector(trained / "run", tmp_path / "det.pt")
    _, info = load_detector(exported)
    assert info.keypoint_channels[3] == slice(7, 12)
    state = torch.load(exported, weights_only=True)
    state["model_spec"]["meta"]["keypoints"] = state["model_spec"]["meta"]["keypoints"][:2]
    torch.save(state, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="keypoint layout has 7 keypoints, its model 20"):
        load_detector(tmp_path / "broken.pt")
