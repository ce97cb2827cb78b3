"""``densevision.PoseEstimator``: the keypoints ``pose predict`` writes for the same image and boxes."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.api import PoseEstimator, Poses
from densevision.cli import main
from densevision.data.images import read_image
from densevision.errors import DenseVisionError


@pytest.fixture(scope="module")
def boxes(synth) -> list[dict]:
    """The first image's ground-truth boxes rounded to whole pixels, with scores, grouped by category."""
    ann = json.loads(synth["ann"].read_text())
    found = [{"image_id": 1, "category_id": a["category_id"], "bbox": [float(round(v)) for v in a["bbox"]],
              "score": 0.5 + a["id"] / 100} for a in ann["annotations"] if a["image_id"] == 1]
    assert len({b["category_id"] for b in found}) > 1
    return sorted(found, key=lambda b: b["category_id"])


@pytest.fixture(scope="module")
def estimator(checkpoints) -> PoseEstimator:
    return PoseEstimator.from_checkpoint(checkpoints["pose"], device="cpu")


def _xyxy(entries: list[dict]) -> np.ndarray:
    xywh = np.array([b["bbox"] for b in entries])
    return np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]]


@pytest.mark.parametrize(("name", "flags", "options", "decode"), [
    ("pose", [], {}, "quarter"),
    ("pose_dark", [], {}, "dark"),
    ("pose", ["--decode", "dark"], {"decode": "dark"}, "dark"),
    ("pose", ["--no-flip-test"], {"flip_test": False}, "quarter"),
], ids=["quarter", "checkpoint-dark", "dark", "no-flip"])
def test_keypoints_equal_pose_predict(checkpoints, synth, boxes, tmp_path, name, flags, options, decode):
    (tmp_path / "boxes.json").write_text(json.dumps(boxes))
    assert main(["pose", "predict", "--checkpoint", str(checkpoints[name]), "--images", str(synth["folder"]),
                 "--boxes", str(tmp_path / "boxes.json"), "--out", str(tmp_path / "kpts.json"),
                 "--device", "cpu", *flags]) == 0
    expected = json.loads((tmp_path / "kpts.json").read_text())
    estimator = PoseEstimator.from_checkpoint(checkpoints[name], device="cpu", **options)
    assert estimator.decode == decode and estimator.unbiased == (name == "pose_dark")
    got = []
    for category in sorted({b["category_id"] for b in boxes}):
        mine = [b for b in boxes if b["category_id"] == category]
        poses = estimator(synth["image"], _xyxy(mine), [b["score"] for b in mine], category_id=category)
        k = len(poses.keypoint_names)
        assert isinstance(poses, Poses) and poses.keypoints.shape == (len(mine), k, 3)
        assert poses.category_id == category and (poses.scores > 0).all()
        got.extend(poses.to_coco(1))
    assert got == expected


def test_oks_nms_drops_duplicates_as_pose_predict_does(checkpoints, synth, boxes, tmp_path, estimator):
    category = boxes[0]["category_id"]
    mine = [b for b in boxes if b["category_id"] == category]
    twice = [*mine, *({**b, "score": b["score"] / 2} for b in mine)]
    (tmp_path / "boxes.json").write_text(json.dumps(twice))
    assert main(["pose", "predict", "--checkpoint", str(checkpoints["pose"]), "--images", str(synth["folder"]),
                 "--boxes", str(tmp_path / "boxes.json"), "--out", str(tmp_path / "kpts.json"),
                 "--device", "cpu", "--oks-nms", "0.9"]) == 0
    expected = json.loads((tmp_path / "kpts.json").read_text())
    scores = [b["score"] for b in twice]
    poses = estimator(synth["image"], _xyxy(twice), scores, category_id=category, oks_nms=0.9)
    assert len(poses) == len(mine) == len(expected) and poses.to_coco(1) == expected
    assert np.array_equal(poses.boxes, _xyxy(mine))
    assert len(estimator(synth["image"], _xyxy(twice), scores, category_id=category)) == len(twice)


def test_every_input_type_gives_the_same_keypoints(synth, boxes, estimator):
    mine = [b for b in boxes if b["category_id"] == boxes[0]["category_id"]]
    xyxy = _xyxy(mine)
    expected = estimator(synth["image"], xyxy, category_id=mine[0]["category_id"]).keypoints
    array = read_image(synth["image"])
    with Image.open(synth["image"]) as im:
        for image in (str(synth["image"]), im, array, torch.from_numpy(array).permute(2, 0, 1) / 255.0):
            for given in (xyxy, torch.from_numpy(xyxy), xyxy.tolist()):
                poses = estimator(image, given, category_id=mine[0]["category_id"])
                assert np.array_equal(poses.keypoints, expected)


def test_no_boxes_give_no_keypoints(synth, estimator):
    poses = estimator(synth["image"], np.zeros((0, 4)), category_id=3)
    assert len(poses) == 0 and poses.keypoints.shape == (0, 5, 3) and poses.to_coco(1) == []


@pytest.mark.parametrize(("boxes", "options", "message"), [
    ([[0, 0, 10, 10]], {}, "the network knows several categories (1 (triangle), 2 (square)"),
    ([[0, 0, 10, 10]], {"category_id": 9}, "category_id 9 is not one of the network's categories"),
    ([[0, 0, 10]], {"category_id": 1}, "boxes must be an array of N×4 finite numbers, got shape (1, 3)"),
    ([[0, 0, 10, float("inf")]], {"category_id": 1}, "boxes must be an array of N×4 finite numbers"),
    ([[0, 0, 10, 10]], {"category_id": 1, "scores": [1, 2]}, "scores must be 1 finite numbers"),
    ([[0, 0, 10, 10]], {"category_id": 1, "oks_nms": 1.5}, "oks_nms must be in [0, 1], got 1.5"),
])
def test_bad_boxes_and_categories_are_one_line_errors(synth, estimator, boxes, options, message):
    scores = options.pop("scores", None)
    with pytest.raises(DenseVisionError) as info:
        estimator(synth["image"], boxes, scores, **options)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unknown_decoding_is_refused(checkpoints):
    with pytest.raises(DenseVisionError, match="decode must be one of quarter, dark, got 'best'"):
        PoseEstimator.from_checkpoint(checkpoints["pose"], device="cpu", decode="best")
