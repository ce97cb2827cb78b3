"""OKS-NMS on hand-made duplicates: the OKS formula, suppression above the threshold only, per image and
category, categories without sigmas left whole."""

from __future__ import annotations

import math

import numpy as np
import pytest

from densevision.data.keypoints import KeypointLayout
from densevision.pose.nms import oks, oks_nms, oks_nms_results

SQUARE = np.array([[10.0, 10.0], [30.0, 10.0], [30.0, 30.0], [10.0, 30.0]])


def test_oks_is_cocos_formula_with_the_mean_area() -> None:
    shifted = SQUARE + [2.0, 0.0]  # d² = 4 at every keypoint
    got = oks(SQUARE, np.stack([SQUARE, shifted, shifted]), 100.0, np.array([100.0, 100.0, 300.0]), [0.1] * 4)
    # exp(-d² / (2 · a · (2σ)²)) with a = 100: exp(-4 / (2 · 100 · 0.04)) = exp(-0.5); a = (100 + 300) / 2: exp(-0.25)
    assert got == pytest.approx([1.0, math.exp(-0.5), math.exp(-0.25)])
    sigmas = [0.1, 0.1, 0.2, 0.2]  # a per-keypoint sigma: the mean of the per-keypoint similarities
    expected = (2 * math.exp(-0.5) + 2 * math.exp(-0.5 / 4)) / 4
    assert oks(SQUARE, shifted[None], 100.0, np.array([100.0]), sigmas) == pytest.approx([expected])


def test_nms_drops_duplicates_above_the_threshold_only() -> None:
    near = SQUARE + [0.5, 0.0]  # OKS exp(-0.25 / 8) ≈ 0.969 with sigma 0.1 and area 100
    far = SQUARE + [4.0, 0.0]  # OKS exp(-2) ≈ 0.135
    keypoints = np.stack([near, SQUARE, far, SQUARE + [0.0, 0.5]])
    scores = np.array([0.8, 0.9, 0.7, 0.6])
    areas = np.full(4, 100.0)
    assert oks_nms(keypoints, scores, areas, [0.1] * 4, 0.9).tolist() == [1, 2]
    assert oks_nms(keypoints, scores, areas, [0.1] * 4, 0.97).tolist() == [1, 0, 2, 3]  # 0.969 < 0.97: kept
    assert oks_nms(keypoints[:0], scores[:0], areas[:0], [0.1] * 4, 0.9).tolist() == []


def _result(image_id: int, category_id: int, points: np.ndarray, score: float) -> dict:
    return {"image_id": image_id, "category_id": category_id, "bbox": [8.0, 8.0, 24.0, 24.0],
            "keypoints": np.c_[points, np.ones(len(points))].ravel().tolist(), "score": score}


def test_results_are_suppressed_per_image_and_category() -> None:
    layout = KeypointLayout([
        {"id": 1, "name": "square", "keypoints": ["a", "b", "c", "d"], "kpt_sigmas": [0.1] * 4},
        {"id": 2, "name": "kite", "keypoints": ["a", "b", "c", "d"], "kpt_sigmas": [0.1] * 4},
        {"id": 3, "name": "unknown", "keypoints": ["a", "b", "c", "d"]},
    ])
    results = [
        _result(1, 1, SQUARE, 0.5),  # the duplicate of the next one, lower score: dropped
        _result(1, 1, SQUARE + 0.2, 0.9),
        _result(1, 2, SQUARE, 0.4),  # another category
        _result(2, 1, SQUARE, 0.3),  # another image
        _result(1, 3, SQUARE, 0.8),  # no sigmas: never suppressed
        _result(1, 3, SQUARE, 0.7),
        _result(1, 1, SQUARE + 30, 0.2),  # far away
    ]
    kept = oks_nms_results(results, layout, 0.9, aspect=1.0)
    assert kept == [results[i] for i in (1, 2, 3, 4, 5, 6)]
    assert oks_nms_results(results, layout, 1.0, aspect=1.0) == results


def test_results_use_the_crop_area() -> None:
    layout = KeypointLayout([{"id": 1, "keypoints": ["a", "b", "c", "d"], "kpt_sigmas": [0.1] * 4}])
    pair = [_result(1, 1, SQUARE, 0.9), _result(1, 1, SQUARE + [2.0, 0.0], 0.8)]
    # box 24 × 24 -> crop 30 × 30 at aspect 1 (area 900): OKS exp(-4 / (2 · 900 · 0.04)) ≈ 0.946
    assert len(oks_nms_results(pair, layout, 0.94, aspect=1.0)) == 1
    assert len(oks_nms_results(pair, layout, 0.95, aspect=1.0)) == 2
    # aspect 0.5 pads the crop to 30 × 60 (area 1800): OKS ≈ 0.973
    assert len(oks_nms_results(pair, layout, 0.97, aspect=0.5)) == 1
