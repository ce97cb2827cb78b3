"""Detector outputs -> COCO results: boxes, RLE masks, keypoints of the detection's category, category ids, thresholds;
perfect detections score 100."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from densevision.data.masks import encode_masks
from densevision.data.results import write_results
from densevision.detection.results import detections_to_coco
from densevision.errors import DenseVisionError
from densevision.evaluation import evaluate

LABEL_TO_CAT = {1: 3, 2: 7}  # non-contiguous data set ids


def _output(masks: np.ndarray, labels: list[int], scores: list[float]) -> dict[str, torch.Tensor]:
    boxes = []
    for m in masks:
        ys, xs = np.nonzero(m)
        boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
    probs = torch.from_numpy(masks).float()[:, None] * 0.9
    return {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": torch.tensor(labels),
            "scores": torch.tensor(scores), "masks": probs}


def _masks(h: int = 30, w: int = 40) -> np.ndarray:
    masks = np.zeros((2, h, w), np.uint8)
    masks[0, 2:12, 3:20] = 1
    masks[1, 15:28, 10:35] = 1
    masks[1, 20:24, 20:25] = 0  # a hole
    return masks


def test_fields_boxes_and_masks():
    masks = _masks()
    results = detections_to_coco([_output(masks, [1, 2], [0.9, 0.4])], [11], LABEL_TO_CAT)
    assert [r["category_id"] for r in results] == [3, 7]
    assert [r["image_id"] for r in results] == [11, 11]
    assert results[0]["bbox"] == [3.0, 2.0, 17.0, 10.0]
    assert results[1]["score"] == pytest.approx(0.4)
    for r, m in zip(results, masks, strict=True):
        assert isinstance(r["segmentation"]["counts"], str)
        assert r["segmentation"]["size"] == [30, 40]
        assert np.array_equal(mask_utils.decode(r["segmentation"]), m)


def test_score_and_mask_thresholds():
    masks = _masks()
    out = _output(masks, [1, 2], [0.9, 0.4])
    assert len(detections_to_coco([out], [1], LABEL_TO_CAT, score_thr=0.5)) == 1
    assert all(mask_utils.area(r["segmentation"]) == 0
               for r in detections_to_coco([out], [1], LABEL_TO_CAT, mask_thr=0.95))


def test_empty_outputs_and_masks():
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0),
             "masks": torch.zeros(0, 1, 5, 6)}
    assert detections_to_coco([empty], [1], LABEL_TO_CAT) == []
    assert encode_masks(torch.zeros(0, 5, 6, dtype=torch.bool)) == []


def test_unknown_label_and_length_mismatch():
    out = _output(_masks(), [1, 5], [0.9, 0.4])
    with pytest.raises(DenseVisionError, match="label 5"):
        detections_to_coco([out], [1], LABEL_TO_CAT)
    with pytest.raises(ValueError, match="2 image ids"):
        detections_to_coco([out], [1, 2], LABEL_TO_CAT)


def test_perfect_detections_score_100(tmp_path):
    masks = _masks()
    gt = {
        "images": [{"id": 11, "file_name": "a.png", "height": 30, "width": 40}],
        "categories": [{"id": 3, "name": "a"}, {"id": 7, "name": "b"}],
        "annotations": [],
    }
    for k, (m, cat) in enumerate(zip(masks, (3, 7), strict=True)):
        rle = mask_utils.encode(np.asfortranarray(m))
        gt["annotations"].append({
            "id": k + 1, "image_id": 11, "category_id": cat, "iscrowd": 0, "area": float(m.sum()),
            "bbox": mask_utils.toBbox(rle).tolist(),
            "segmentation": {"size": [30, 40], "counts": rle["counts"].decode()},
        })
    results = detections_to_coco([_output(masks, [1, 2], [0.9, 0.4])], [11], LABEL_TO_CAT)
    path = tmp_path / "results.json"
    write_results(path, results)
    metrics = evaluate(gt, str(path))
    assert {t: metrics[t]["AP"] for t in metrics} == pytest.approx({"bbox": 100.0, "segm": 100.0,
                                                                    "boundary": 100.0})


def test_keypoints_of_each_detection_category_only():
    # Stacked layout: category 3 owns channels 0-2, category 7 channels 3-6.
    channels = {3: slice(0, 3), 7: slice(3, 7)}
    out = _output(_masks(), [2, 1], [0.9, 0.4])
    del out["masks"]
    out["keypoints"] = torch.zeros(2, 7, 3)
    out["keypoints"][..., 0] = torch.arange(14.0).reshape(2, 7)
    out["keypoints"][..., 1] = 100 + torch.arange(14.0).reshape(2, 7)
    out["keypoints"][..., 2] = 1
    out["keypoints_scores"] = -torch.arange(14.0).reshape(2, 7)
    square, triangle = detections_to_coco([out], [11], LABEL_TO_CAT, keypoint_channels=channels)
    assert square["category_id"] == 7 and "segmentation" not in square
    assert square["keypoints"] == [3.0, 103.0, -3.0, 4.0, 104.0, -4.0, 5.0, 105.0, -5.0, 6.0, 106.0, -6.0]
    assert triangle["category_id"] == 3
    assert triangle["keypoints"] == [7.0, 107.0, -7.0, 8.0, 108.0, -8.0, 9.0, 109.0, -9.0]
    # A category outside the layout, or no layout at all: no keypoints.
    assert "keypoints" not in detections_to_coco([out], [11], LABEL_TO_CAT, keypoint_channels={7: slice(3, 7)})[1]
    assert all("keypoints" not in r for r in detections_to_coco([out], [11], LABEL_TO_CAT))


def test_perfect_keypoints_score_100():
    cats = [{"id": 3, "name": "a", "keypoints": ["p", "q", "r"], "kpt_sigmas": [0.025] * 3},
            {"id": 7, "name": "b", "keypoints": ["p", "q", "r", "s"], "kpt_sigmas": [0.025] * 4}]
    points = {3: [[5.0, 4.0, 2], [15.0, 4.0, 2], [10.0, 10.0, 2]],
              7: [[12.0, 16.0, 2], [33.0, 16.0, 2], [33.0, 27.0, 1], [12.0, 27.0, 2]]}
    boxes = {3: [3.0, 2.0, 20.0, 12.0], 7: [10.0, 15.0, 35.0, 28.0]}
    gt = {"images": [{"id": 11, "file_name": "a.png", "height": 30, "width": 40}], "categories": cats,
          "annotations": [{"id": i + 1, "image_id": 11, "category_id": c, "iscrowd": 0, "num_keypoints": len(points[c]),
                           "area": (boxes[c][2] - boxes[c][0]) * (boxes[c][3] - boxes[c][1]),
                           "bbox": [*boxes[c][:2], boxes[c][2] - boxes[c][0], boxes[c][3] - boxes[c][1]],
                           "keypoints": [v for p in points[c] for v in p]} for i, c in enumerate((3, 7))]}
    stacked = torch.zeros(2, 7, 3)
    stacked[0, 0:3] = torch.tensor(points[3])
    stacked[1, 3:7] = torch.tensor(points[7])
    out = {"boxes": torch.tensor([boxes[3], boxes[7]]), "labels": torch.tensor([1, 2]),
           "scores": torch.tensor([0.9, 0.8]), "keypoints": stacked, "keypoints_scores": torch.ones(2, 7)}
    results = detections_to_coco([out], [11], LABEL_TO_CAT, keypoint_channels={3: slice(0, 3), 7: slice(3, 7)})
    metrics = evaluate(gt, results, ["bbox", "keypoints"])
    assert metrics["keypoints"]["AP"] == pytest.approx(100.0) and metrics["bbox"]["AP"] == pytest.approx(100.0)
