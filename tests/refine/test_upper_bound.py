"""The upper bound of boundary refinement: the band, COCO-style matching, restored masks and their AP on hand-made
cases whose numbers are known."""

from __future__ import annotations

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from densevision.errors import DataError, DenseVisionError
from densevision.evaluation import evaluate
from densevision.refine.upper_bound import boundary_band, match_greedy, restore_band, upper_bound_results

H = W = 48


def square(y0: int, x0: int, side: int = 16) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y0 + side, x0:x0 + side] = 1
    return mask


def ground_truth(masks: list[np.ndarray], rle_of, categories=None) -> dict:
    categories = categories or [1] * len(masks)
    anns = [{"id": i + 1, "image_id": 1, "category_id": c, "segmentation": rle_of(m), "area": float(m.sum()),
             "bbox": [float(v) for v in mask_utils.toBbox(rle_of(m))], "iscrowd": 0}
            for i, (m, c) in enumerate(zip(masks, categories, strict=True))]
    return {"images": [{"id": 1, "file_name": "a.png", "height": H, "width": W}], "annotations": anns,
            "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}


def result(mask: np.ndarray, rle_of, score: float = 0.9, category: int = 1) -> dict:
    rle = rle_of(mask)
    return {"image_id": 1, "category_id": category, "score": score, "segmentation": rle,
            "bbox": [float(v) for v in mask_utils.toBbox(rle)]}


def test_band_is_width_layers_on_each_side_of_the_boundary():
    mask = square(10, 10)
    for width in (1, 2, 3):
        band = boundary_band(mask, width)
        inside, outside = band & (mask == 1), band & (mask == 0)
        assert inside.sum() == 16 * 16 - (16 - 2 * width) ** 2
        assert outside.sum() == (16 + 2 * width) ** 2 - 16 * 16
    assert not boundary_band(np.zeros((H, W)), 2).any()
    edge = np.zeros((H, W), np.uint8)
    edge[:8, :8] = 1  # at the image corner: the image edge counts as boundary, nothing outside the image
    assert boundary_band(edge, 1)[0, 5] and boundary_band(edge, 1).sum() == (64 - 36) + (81 - 64)
    with pytest.raises(DenseVisionError, match="width"):
        boundary_band(mask, 0)


def test_restore_band_changes_only_pixels_near_the_coarse_boundary():
    truth = square(10, 10, 20)
    coarse = square(13, 10, 20)  # 3 px too low
    assert (restore_band(coarse, truth, 3) == truth.astype(bool)).all()
    two = restore_band(coarse, truth, 2)
    # 3 px from the coarse boundary stay coarse: the missing top row, the extra row's middle 16 pixels
    assert (two != truth.astype(bool)).sum() == 20 + 16
    assert not two[10].any() and two[11, 10:30].all() and two[30, 12:28].all() and not two[30, 10:12].any()


def test_greedy_matching_by_score_category_and_iou(rle_of):
    gts = [rle_of(square(4, 4)), rle_of(square(26, 26))]
    dts = [rle_of(square(5, 4)), rle_of(square(4, 4)), rle_of(square(26, 26)), rle_of(square(0, 30))]
    # the higher-scoring second detection takes the first ground truth; the first finds it taken
    matched = match_greedy(dts, [0.5, 0.9, 0.8, 0.7], [1, 1, 2, 1], gts, [1, 1])
    assert matched.tolist() == [-1, 0, -1, -1]
    assert match_greedy(dts, [0.5, 0.9, 0.8, 0.7], [1, 1, 1, 1], gts, [1, 1]).tolist() == [-1, 0, 1, -1]
    assert match_greedy([], [], [], gts, [1, 1]).tolist() == []


def test_one_pixel_shift_is_restored_exactly_and_unmatched_detections_are_unchanged(rle_of):
    truth = [square(4, 4), square(26, 26)]
    gt = ground_truth(truth, rle_of)
    shifted = result(square(5, 4), rle_of, 0.9)          # matches the first square, 1 px off
    far = result(square(30, 2, 10), rle_of, 0.8)          # overlaps nothing: a false positive
    wrong_class = result(square(27, 26), rle_of, 0.7, 2)  # the second square's shape, another category
    restored = upper_bound_results(gt, [shifted, far, wrong_class], (1, 2))
    for width in (1, 2):
        out = restored[width]
        assert [(r["score"], r["category_id"], r["bbox"]) for r in out] == \
            [(r["score"], r["category_id"], r["bbox"]) for r in (shifted, far, wrong_class)]
        assert (mask_utils.decode(out[0]["segmentation"]) == truth[0]).all()
        for k, original in ((1, far), (2, wrong_class)):
            assert (mask_utils.decode(out[k]["segmentation"]) == mask_utils.decode(original["segmentation"])).all()
    coarse_ap = evaluate(gt, [shifted], ["segm"])["segm"]["AP"]
    assert coarse_ap < 100.0  # IoU 15/17 misses the strict thresholds
    assert evaluate(gt, [restored[1][0]], ["segm", "boundary"]) == {
        t: pytest.approx(evaluate(gt, [result(truth[0], rle_of)], [t])[t]) for t in ("segm", "boundary")}
    assert evaluate(gt, restored[1][:1] + [result(truth[1], rle_of, 0.5)], ["segm"])["segm"]["AP"] == \
        pytest.approx(100.0)


def test_errors_name_the_problem(rle_of):
    gt = ground_truth([square(4, 4)], rle_of)
    with pytest.raises(DataError, match="result 0: image_id 7"):
        upper_bound_results(gt, [{**result(square(4, 4), rle_of), "image_id": 7}])
    with pytest.raises(DenseVisionError, match="widths must be >= 1"):
        upper_bound_results(gt, [], (0, 1))
