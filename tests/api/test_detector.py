"""``densevision.Detector``: the same detections as ``detect predict`` on the same image, for every input type."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.api import Detections, Detector
from densevision.cli import main
from densevision.data.images import read_image
from densevision.errors import DenseVisionError


@pytest.fixture(scope="module")
def detector(checkpoints) -> Detector:
    return Detector.from_checkpoint(checkpoints["detector"], device="cpu")


def _predict_file(checkpoint, folder, out, *extra: str) -> list[dict]:
    assert main(["detect", "predict", "--checkpoint", str(checkpoint), "--images", str(folder), "--out", str(out),
                 "--device", "cpu", "--no-progress", *extra]) == 0
    return json.loads(out.read_text())


def test_detections_equal_detect_predict(detector, checkpoints, synth, tmp_path):
    expected = _predict_file(checkpoints["detector"], synth["folder"], tmp_path / "res.json")
    dets = detector(synth["image"])
    assert len(dets) == len(expected) > 0
    assert dets.to_coco(1) == expected
    h, w = read_image(synth["image"]).shape[:2]
    assert dets.boxes.shape == (len(dets), 4) and dets.boxes.dtype == np.float32
    assert dets.masks.shape == (len(dets), h, w) and dets.masks.dtype == np.bool_
    assert list(dets.scores) == sorted(dets.scores, reverse=True)
    names = {c["id"]: c["name"] for c in detector.categories}
    assert dets.names == [names[i] for i in dets.category_ids]


def test_score_threshold_and_input_size_as_detect_predict(checkpoints, synth, tmp_path):
    scores = Detector.from_checkpoint(checkpoints["detector"], device="cpu", input_size=80)(synth["image"]).scores
    thr = float(np.median(scores))
    expected = _predict_file(checkpoints["detector"], synth["folder"], tmp_path / "res.json", "--score-thr", str(thr),
                             "--input-size", "80")
    dets = Detector.from_checkpoint(checkpoints["detector"], device="cpu", score_thr=thr, input_size=80)(
        synth["image"])
    assert dets.to_coco(1) == expected
    assert 0 < len(dets) < len(scores) and (dets.scores >= thr).all()


def test_every_input_type_gives_the_same_detections(detector, synth):
    array = read_image(synth["image"])
    by_path = detector(str(synth["image"]))
    with Image.open(synth["image"]) as im:
        by_pil = detector(im)
    tensor = torch.from_numpy(array).permute(2, 0, 1).float() / 255
    for dets in (detector(synth["image"]), by_pil, detector(array), detector(tensor)):
        assert dets.to_coco(7) == by_path.to_coco(7)


def test_empty_detections_keep_their_shapes(checkpoints, synth):
    dets = Detector.from_checkpoint(checkpoints["detector"], device="cpu", score_thr=1.0)(synth["image"])
    assert isinstance(dets, Detections) and len(dets) == 0
    assert dets.boxes.shape == (0, 4) and dets.masks.shape == (0, 96, 96) and dets.to_coco(1) == []


@pytest.mark.parametrize(("make", "message"), [
    (lambda path: path.parent / "missing.png", "not found"),
    (lambda path: np.zeros((8, 8, 3), np.float32), "H×W×3 uint8 RGB, got shape (8, 8, 3) and dtype float32"),
    (lambda path: np.zeros((8, 8), np.uint8), "H×W×3 uint8 RGB"),
    (lambda path: torch.zeros(8, 8, 3), "3×H×W float in [0, 1], got shape (8, 8, 3)"),
    (lambda path: torch.full((3, 8, 8), 2.0), "in [0, 1]"),
    (lambda path: [[0, 0, 0]], "not list"),
])
def test_bad_images_are_one_line_errors(detector, synth, make, message):
    with pytest.raises(DenseVisionError) as info:
        detector(make(synth["image"]))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_score_threshold_is_refused(checkpoints):
    with pytest.raises(DenseVisionError, match="score_thr must be in"):
        Detector.from_checkpoint(checkpoints["detector"], device="cpu", score_thr=1.5)


def test_keypoint_rcnn_keypoints_equal_detect_predict(checkpoints, synth, tmp_path):
    expected = _predict_file(checkpoints["keypoint_detector"], synth["folder"], tmp_path / "res.json")
    detector = Detector.from_checkpoint(checkpoints["keypoint_detector"], device="cpu")
    dets = detector(synth["image"])
    assert len(dets) == len(expected) > 0 and dets.masks is None
    assert dets.to_coco(1) == expected
    sizes = {c["id"]: len(c["keypoints"]) for c in detector.info.keypoints}
    for category_id, points in zip(dets.category_ids.tolist(), dets.keypoints, strict=True):
        if category_id in sizes:
            assert points.shape == (sizes[category_id], 3) and points.dtype == np.float32
        else:
            assert points is None
    assert any(points is not None for points in dets.keypoints)


def test_mask_rcnn_has_no_keypoints(detector, synth):
    assert detector(synth["image"]).keypoints is None
