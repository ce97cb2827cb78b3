"""Merge rules: probabilities averaged over covering patches, > 0.5 is foreground, uncovered pixels keep the
coarse mask."""

from __future__ import annotations

import torch

from densevision.refine.merge import merge_patches
from densevision.refine.patches import propose_patches


def reference_merge(coarse, probs, boxes, instance):
    """Loop reference: sum and count per pixel on a canvas padded for patches overhanging the image."""
    n, h, w = coarse.shape
    p = probs.shape[-1]
    sums = torch.zeros(n, h + p, w + p, dtype=torch.float64)
    counts = torch.zeros_like(sums)
    for k in range(len(boxes)):
        x0, y0, x1, y1 = boxes[k].tolist()
        sums[instance[k], y0:y1, x0:x1] += probs[k].double()
        counts[instance[k], y0:y1, x0:x1] += 1
    sums, counts = sums[:, :h, :w], counts[:, :h, :w]
    return torch.where(counts > 0, sums / counts.clamp(min=1) > 0.5, coarse.bool())


def test_overlapping_patches_are_averaged():
    coarse = torch.zeros(1, 4, 6, dtype=torch.bool)
    boxes = torch.tensor([[0, 0, 4, 4], [2, 0, 6, 4]])
    probs = torch.stack([torch.full((4, 4), 0.8), torch.full((4, 4), 0.3)])
    out = merge_patches(coarse, probs, boxes, torch.tensor([0, 0]))[0]
    assert out[:, :2].all()  # 0.8 alone
    assert out[:, 2:4].all()  # (0.8 + 0.3) / 2 = 0.55
    assert not out[:, 4:].any()  # 0.3 alone
    probs[1] = 0.1  # overlap average 0.45
    out = merge_patches(coarse, probs, boxes, torch.tensor([0, 0]))[0]
    assert out[:, :2].all() and not out[:, 2:].any()


def test_an_average_of_exactly_one_half_is_background():
    coarse = torch.ones(1, 2, 3, dtype=torch.bool)
    boxes = torch.tensor([[0, 0, 2, 2], [0, 0, 2, 2]])
    probs = torch.stack([torch.full((2, 2), 0.25), torch.full((2, 2), 0.75)])
    out = merge_patches(coarse, probs, boxes, torch.tensor([0, 0]))[0]
    assert not out[:, :2].any() and out[:, 2].all()


def test_uncovered_pixels_and_instances_keep_the_coarse_mask():
    gen = torch.Generator().manual_seed(1)
    coarse = torch.rand(3, 20, 20, generator=gen) > 0.5
    boxes = torch.tensor([[4, 4, 12, 12]])
    probs = torch.ones(1, 8, 8)
    out = merge_patches(coarse, probs, boxes, torch.tensor([1]))
    assert torch.equal(out[0], coarse[0]) and torch.equal(out[2], coarse[2])
    outside = torch.ones(20, 20, dtype=torch.bool)
    outside[4:12, 4:12] = False
    assert torch.equal(out[1][outside], coarse[1][outside]) and out[1, 4:12, 4:12].all()
    assert torch.equal(merge_patches(coarse, torch.zeros(0, 8, 8), torch.zeros(0, 4, dtype=torch.long),
                                     torch.zeros(0, dtype=torch.long)), coarse)


def test_patch_part_outside_a_small_image_is_ignored():
    coarse = torch.zeros(1, 5, 7, dtype=torch.bool)
    probs = torch.zeros(1, 16, 16)
    probs[0, :5, :7] = 1.0
    out = merge_patches(coarse, probs, torch.tensor([[0, 0, 16, 16]]), torch.tensor([0]))
    assert out.shape == (1, 5, 7) and out.all()


def test_merge_equals_the_loop_reference_on_proposed_patches():
    gen = torch.Generator().manual_seed(0)
    for h, w, p in ((40, 50, 16), (90, 120, 32), (20, 30, 32)):
        coarse = torch.rand(4, h, w, generator=gen) > 0.7
        coarse[2] = False
        boxes, inst = propose_patches(coarse, patch_size=p, nms_iou=0.4)
        probs = torch.rand(len(boxes), p, p, generator=gen)
        expected = reference_merge(coarse, probs, boxes, inst)
        assert torch.equal(merge_patches(coarse, probs, boxes, inst), expected)
