"""Which instances, patches and pixels are refined; the detector's boxes and scores kept."""

from __future__ import annotations

import pytest
import torch

from densevision.errors import DenseVisionError
from densevision.refine.config import RefineRuleConfig
from densevision.refine.merge import merge_patches
from densevision.refine.selection import (
    check_rule,
    keep_detection_boxes,
    merge_with_margin,
    patch_outside_fraction,
    select_instances,
    select_patches,
    skip_reasons,
)


def test_select_instances_keeps_areas_at_or_above_the_minimum():
    areas = torch.tensor([0, 15, 16, 400, 1024])
    assert select_instances(areas, 16).tolist() == [False, False, True, True, True]
    assert select_instances(areas, 0).all()
    assert not select_instances(areas, 2000).any()
    with pytest.raises(DenseVisionError, match="minimum refined area"):
        select_instances(areas, -1)


def test_select_patches_drops_the_patches_of_unselected_instances_in_order():
    boxes = torch.arange(20).reshape(5, 4)
    instance = torch.tensor([0, 0, 1, 2, 2])
    kept_boxes, kept_instance = select_patches(boxes, instance, torch.tensor([True, False, True]))
    assert kept_instance.tolist() == [0, 0, 2, 2]
    assert kept_boxes.tolist() == boxes[[0, 1, 3, 4]].tolist()


def test_an_unselected_instance_keeps_its_coarse_mask_in_the_merge():
    coarse = torch.zeros(2, 4, 4, dtype=torch.bool)
    coarse[:, 1:3, 1:3] = True
    boxes = torch.tensor([[0, 0, 4, 4], [0, 0, 4, 4]])
    probs = torch.ones(2, 4, 4)  # the refiner would fill both masks
    kept_boxes, kept_instance = select_patches(boxes, torch.tensor([0, 1]), torch.tensor([True, False]))
    out = merge_patches(coarse, probs[:1], kept_boxes, kept_instance)
    assert out[0].all()
    assert torch.equal(out[1], coarse[1])


def test_patch_outside_fraction():
    instance_boxes = torch.tensor([[0, 0, 8, 8], [10, 10, 12, 12]])
    boxes = torch.tensor([[0, 0, 4, 4], [4, 4, 12, 12], [0, 0, 4, 4], [10, 10, 14, 14]])
    frac = patch_outside_fraction(boxes, torch.tensor([0, 0, 1, 1]), instance_boxes)
    assert frac.tolist() == pytest.approx([0.0, 0.75, 1.0, 0.75])


def test_margin_zero_is_the_plain_merge():
    torch.manual_seed(0)
    coarse = torch.rand(2, 9, 9) > 0.5
    boxes = torch.tensor([[0, 0, 6, 6], [3, 3, 9, 9], [2, 0, 8, 6]])
    instance = torch.tensor([0, 0, 1])
    probs = torch.rand(3, 6, 6)
    assert torch.equal(merge_with_margin(coarse, probs, boxes, instance, 0.0),
                       merge_patches(coarse, probs, boxes, instance))


def test_margin_keeps_the_coarse_pixel_where_the_average_is_near_one_half():
    coarse = torch.zeros(1, 6, 6, dtype=torch.bool)
    coarse[0, :, :3] = True  # left half foreground
    probs = torch.tensor([0.9, 0.55, 0.45, 0.55, 0.45, 0.1]).expand(1, 6, 6)  # one probability per column
    boxes, instance = torch.tensor([[0, 0, 6, 6]]), torch.tensor([0])
    # 0.9 -> foreground, 0.1 -> background, 0.45 / 0.55 within the margin -> the coarse value
    out = merge_with_margin(coarse, probs, boxes, instance, 0.1)[0]
    assert out[0].tolist() == [True, True, True, False, False, False] and torch.equal(out, out[:1].expand(6, 6))
    out = merge_with_margin(~coarse, probs, boxes, instance, 0.1)[0]
    assert out[0].tolist() == [True, False, False, True, True, False]
    out = merge_with_margin(coarse, probs, boxes, instance, 0.0)[0]
    assert out[0].tolist() == [True, True, False, True, False, False]


def test_margin_leaves_uncovered_pixels_coarse_and_is_checked():
    coarse = torch.zeros(1, 4, 8, dtype=torch.bool)
    coarse[0, :, 6:] = True
    boxes = torch.tensor([[0, 0, 4, 4]])
    out = merge_with_margin(coarse, torch.ones(1, 4, 4), boxes, torch.tensor([0]), 0.3)
    assert out[0, :, :4].all() and not out[0, :, 4:6].any() and out[0, :, 6:].all()
    with pytest.raises(DenseVisionError, match="margin"):
        merge_with_margin(coarse, torch.ones(1, 4, 4), boxes, torch.tensor([0]), 0.6)


def test_keep_detection_boxes_restores_box_and_score(rle_of):
    mask = torch.zeros(10, 10, dtype=torch.uint8)
    mask[2:5, 3:9] = 1
    coarse = [{"image_id": 1, "category_id": 2, "score": 0.9, "bbox": [1.0, 1.0, 8.0, 8.0],
               "segmentation": rle_of(mask.numpy())},
              {"image_id": 1, "category_id": 2, "score": 0.4, "segmentation": rle_of(mask.numpy())}]
    refined = [{"image_id": 1, "category_id": 2, "score": 0.0, "bbox": [0.0, 0.0, 1.0, 1.0],
                "segmentation": "refined-a"},
               {"image_id": 1, "category_id": 2, "score": 0.0, "bbox": [0.0, 0.0, 1.0, 1.0],
                "segmentation": "refined-b"}]
    kept = keep_detection_boxes(coarse, refined)
    assert kept[0]["bbox"] == [1.0, 1.0, 8.0, 8.0] and kept[0]["score"] == 0.9
    assert kept[1]["bbox"] == [3.0, 2.0, 6.0, 3.0] and kept[1]["score"] == 0.4  # box of the coarse mask
    assert [k["segmentation"] for k in kept] == ["refined-a", "refined-b"]
    assert refined[0]["bbox"] == [0.0, 0.0, 1.0, 1.0]  # inputs untouched
    with pytest.raises(DenseVisionError, match="1 refined results for 2"):
        keep_detection_boxes(coarse, refined[:1])


def _detections(rle_of, *specs):
    """Detections ``(image_id, score, side)``: a ``side``² square mask in a 64×64 image."""
    out = []
    for image_id, score, side in specs:
        mask = torch.zeros(64, 64, dtype=torch.uint8)
        mask[:side, :side] = 1
        out.append({"image_id": image_id, "category_id": 1, "score": score, "segmentation": rle_of(mask.numpy())})
    return out


def test_skip_reasons_apply_score_then_top_k_per_image_then_area(rle_of):
    results = _detections(rle_of, (1, 0.9, 40), (1, 0.2, 40), (1, 0.8, 40), (1, 0.7, 40), (2, 0.6, 40),
                          (2, 0.95, 10), (2, 0.05, 10))
    rule = RefineRuleConfig(score_thr=0.5, top_k=2, min_area=30 * 30)
    # image 1: 0.2 is below the threshold, 0.7 is third of the three left; image 2: 0.95 is first but small
    assert skip_reasons(results, rule) == [None, "score", None, "top_k", None, "area", "score"]


def test_default_rule_skips_only_small_masks(rle_of):
    results = _detections(rle_of, (1, 0.01, 48), (1, 0.0, 47), *[(1, 0.5, 60)] * 150)
    reasons = skip_reasons(results, RefineRuleConfig())
    assert reasons[:2] == [None, "area"] and set(reasons[2:]) == {None}


def test_top_k_ties_keep_the_earlier_detection(rle_of):
    results = _detections(rle_of, (3, 0.5, 8), (3, 0.5, 8), (3, 0.5, 8))
    assert skip_reasons(results, RefineRuleConfig(top_k=1, min_area=0)) == [None, "top_k", "top_k"]
    assert skip_reasons([], RefineRuleConfig(top_k=1)) == []


@pytest.mark.parametrize("rule,message", [
    (RefineRuleConfig(score_thr=float("nan")), "score threshold"),
    (RefineRuleConfig(top_k=0), "top-k must be at least 1"),
    (RefineRuleConfig(min_area=-1), "minimum refined area"),
])
def test_check_rule_refuses_bad_values(rule, message):
    with pytest.raises(DenseVisionError, match=message):
        check_rule(rule)
