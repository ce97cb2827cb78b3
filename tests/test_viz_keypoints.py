"""Keypoint drawings: skeleton lines between confident keypoints, dots coloured by confidence, score threshold."""

from __future__ import annotations

import numpy as np

from densevision.viz import color_for, confidence_color, draw_keypoint_results


def test_confidence_colours_run_from_red_to_green() -> None:
    assert confidence_color(0.0) == (255, 0, 0) and confidence_color(1.0) == (0, 255, 0)
    assert confidence_color(0.5) == (255, 255, 0) and confidence_color(7.0) == (0, 255, 0)


def test_lines_join_confident_keypoints_and_dots_show_confidence() -> None:
    image = np.full((40, 60, 3), 100, np.uint8)
    kept = {"image_id": 1, "category_id": 3, "score": 0.8,
            "keypoints": [10, 10, 0.9, 40, 10, 1.0, 40, 34, 0.1]}
    faint = {"image_id": 1, "category_id": 3, "score": 0.2, "keypoints": [50, 30, 1.0]}
    out = draw_keypoint_results(image, [kept, faint], {3: [(0, 1), (1, 2)]}, score_thr=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert tuple(out[10, 25]) == color_for(3)  # on the line between the two confident keypoints
    assert tuple(out[22, 40]) == (100, 100, 100)  # no line to the keypoint below kpt_thr
    assert tuple(out[10, 10]) == confidence_color(0.9) and tuple(out[34, 40]) == confidence_color(0.1)
    assert tuple(out[30, 50]) == (100, 100, 100)  # the instance below score_thr is not drawn
    assert np.array_equal(image, np.full((40, 60, 3), 100, np.uint8))  # input not modified
    boxed = draw_keypoint_results(image, [{**kept, "bbox": [5, 20, 50, 18]}], {}, {3: "star"})
    assert tuple(boxed[38, 20]) == color_for(3)  # the box's bottom edge
    assert tuple(boxed[10, 25]) == (100, 100, 100)  # no skeleton without edges
