"""Boundary map, scores, proposals and cropping on hand-made masks, against a per-pixel loop reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torchvision.ops import nms

from densevision.refine.patches import (
    boundary_map,
    boundary_pixels,
    boundary_scores,
    crop_patches,
    decode_masks,
    mask_boxes,
    propose_patches,
)


def reference_scores(mask: np.ndarray) -> np.ndarray:
    """Per-pixel loop: foreground count s of the zero-padded 3×3 neighbourhood, min(|s - 9|, s) / 4.5."""
    h, w = mask.shape
    padded = np.pad(mask.astype(int), 1)
    out = np.zeros((h, w))
    for y in range(h):
        for x in range(w):
            s = padded[y:y + 3, x:x + 3].sum()
            out[y, x] = min(abs(s - 9), s) / 4.5
    return out


def reference_proposals(mask: np.ndarray, patch_size: int, nms_iou: float) -> set[tuple[int, ...]]:
    """One instance at a time, as upstream BPR: boxes on every boundary pixel, NMS, shift inside the image."""
    h, w = mask.shape
    scores = reference_scores(mask)
    ys, xs = np.nonzero(scores)
    if len(ys) == 0:
        return set()
    half = patch_size // 2
    boxes = torch.tensor(np.stack([xs - half, ys - half, xs - half + patch_size, ys - half + patch_size], 1))
    keep = nms(boxes.float(), torch.tensor(scores[ys, xs]).float(), nms_iou)
    out = set()
    for x0, y0, _, _ in boxes[keep].tolist():
        x0 = min(max(x0, 0), max(w - patch_size, 0))
        y0 = min(max(y0, 0), max(h - patch_size, 0))
        out.add((x0, y0, x0 + patch_size, y0 + patch_size))
    return out


def square(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> torch.Tensor:
    m = torch.zeros(h, w, dtype=torch.bool)
    m[y0:y1, x0:x1] = True
    return m


def ring(size: int, outer: float, inner: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2).sqrt()
    return (r < outer) & (r >= inner)


def test_square_boundary_and_scores():
    m = square(12, 12, 3, 3, 8, 8)  # 5×5 square
    scores = boundary_scores(m[None])[0]
    assert np.allclose(scores.numpy(), reference_scores(m.numpy()))
    band = boundary_map(m[None])[0]
    expected = square(12, 12, 2, 2, 9, 9) & ~square(12, 12, 4, 4, 7, 7)  # one pixel either side of the edge
    assert torch.equal(band, expected)
    assert scores[2, 2] == pytest.approx(1 / 4.5)  # outside corner: s = 1
    assert scores[3, 3] == pytest.approx(4 / 4.5)  # inside corner: s = 4
    assert scores[3, 5] == pytest.approx(3 / 4.5)  # inside edge: s = 6
    assert scores[2, 5] == pytest.approx(3 / 4.5)  # outside edge: s = 3
    assert scores[5, 5] == 0 and scores[0, 0] == 0


def test_ring_has_inner_and_outer_boundaries():
    m = ring(40, 15, 7)
    band = boundary_map(m[None])[0]
    assert torch.equal(band, torch.from_numpy(reference_scores(m.numpy()) > 0))
    hole_centre, hole_edge = (20, 20), (20, 20 - 7)
    assert not band[hole_centre] and band[hole_edge]
    yy, xx = torch.nonzero(band, as_tuple=True)
    r = ((yy - 20.0) ** 2 + (xx - 20.0) ** 2).sqrt()
    assert (r < 10).any() and (r > 12).any() and not ((r > 9) & (r < 13)).any()


def test_mask_touching_the_image_edge_counts_the_edge():
    m = square(10, 10, 0, 0, 4, 10)  # top four rows, full width
    band = boundary_map(m[None])[0]
    assert band[0].all()  # the image edge is a boundary (zero padding)
    assert band[3].all() and band[4].all() and not band[5:].any()
    full = torch.ones(1, 6, 7, dtype=torch.bool)
    ring_of_edge = torch.ones(6, 7, dtype=torch.bool)
    ring_of_edge[1:-1, 1:-1] = False
    assert torch.equal(boundary_map(full)[0], ring_of_edge)


def test_mask_boxes_and_empty_masks():
    masks = torch.stack([square(10, 12, 2, 3, 5, 9), torch.zeros(10, 12, dtype=torch.bool)])
    assert mask_boxes(masks).tolist() == [[3, 2, 9, 5], [0, 0, 0, 0]]
    boxes, inst = propose_patches(torch.zeros(2, 30, 30, dtype=torch.bool))
    assert boxes.shape == (0, 4) and inst.shape == (0,)


def test_cropped_boundary_pixels_equal_the_full_image_map():
    gen = torch.Generator().manual_seed(0)
    masks = torch.zeros(5, 50, 70, dtype=torch.bool)
    masks[0] = torch.rand(50, 70, generator=gen) > 0.6  # noisy, touches every edge
    masks[1, 10:13, 60:70] = True  # thin, on the right edge
    masks[2] = ring(70, 20, 8)[:50]  # clipped ring
    masks[4, 49, 0] = True  # single corner pixel; mask 3 stays empty
    inst, y, x, score = boundary_pixels(masks)
    dense = torch.zeros(5, 50, 70)
    dense[inst, y, x] = score
    assert torch.equal(dense, boundary_scores(masks))
    assert len(inst) == int(boundary_map(masks).sum())


@pytest.mark.parametrize("patch_size,nms_iou", [(16, 0.25), (64, 0.55), (9, 0.4)])
def test_proposals_match_the_per_instance_reference(patch_size, nms_iou):
    masks = torch.stack([ring(60, 25, 10), square(60, 60, 0, 30, 20, 60), square(60, 60, 40, 2, 43, 5)])
    boxes, inst = propose_patches(masks, patch_size=patch_size, nms_iou=nms_iou)
    assert torch.equal(inst, torch.sort(inst).values)
    assert ((boxes[:, 2:] - boxes[:, :2]) == patch_size).all()
    assert len(torch.unique(torch.cat([inst[:, None], boxes], 1), dim=0)) == len(boxes)
    for k in range(len(masks)):
        got = {tuple(b) for b in boxes[inst == k].tolist()}
        assert got == reference_proposals(masks[k].numpy(), patch_size, nms_iou)


def test_patch_count_grows_with_the_nms_threshold():
    masks = torch.stack([ring(128, 50, 20), square(128, 128, 10, 20, 90, 60)])
    thresholds = (0.1, 0.25, 0.4, 0.55, 0.7, 0.85)
    counts = [len(propose_patches(masks, patch_size=32, nms_iou=t)[0]) for t in thresholds]
    assert counts == sorted(counts) and counts[0] < counts[-1]


def test_boxes_leaving_the_image_are_shifted_inside():
    masks = torch.stack([square(100, 80, 0, 0, 5, 5), square(100, 80, 95, 70, 100, 80)])
    boxes, inst = propose_patches(masks, patch_size=64)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 80).all() and (boxes[:, 3] <= 100).all()
    assert boxes[inst == 0].tolist() == [[0, 0, 64, 64]]
    assert boxes[inst == 1].tolist() == [[16, 36, 80, 100]]


def test_instance_smaller_than_a_patch_gets_one_covering_patch():
    masks = square(200, 200, 100, 120, 103, 124)[None]
    boxes, inst = propose_patches(masks, patch_size=64, nms_iou=0.25)
    assert len(boxes) == 1
    x0, y0, x1, y1 = boxes[0].tolist()
    assert x0 <= 119 and x1 >= 125 and y0 <= 99 and y1 >= 104  # the whole boundary band is inside


def test_image_smaller_than_a_patch():
    masks = square(20, 30, 5, 5, 15, 25)[None]
    boxes, inst = propose_patches(masks, patch_size=64)
    assert boxes.tolist() == [[0, 0, 64, 64]]  # every kept box lands on the same place: one patch
    image = torch.arange(20 * 30 * 3, dtype=torch.int32).reshape(1, 20, 30, 3)
    patch = crop_patches(image, boxes, torch.zeros_like(inst), 64)
    assert patch.shape == (1, 3, 64, 64)  # channels first
    assert torch.equal(patch[0, :, :20, :30], image[0].permute(2, 0, 1))
    assert not patch[0, :, 20:].any() and not patch[0, :, :, 30:].any()
    assert torch.equal(crop_patches(masks, boxes, inst, 64)[0, :20, :30], masks[0])


def test_crop_patches_cuts_the_right_pixels():
    source = torch.arange(2 * 10 * 12).reshape(2, 10, 12)
    boxes = torch.tensor([[0, 0, 4, 4], [8, 6, 12, 10], [3, 2, 7, 6]])
    out = crop_patches(source.transpose(1, 2).contiguous().transpose(1, 2), boxes, torch.tensor([0, 1, 1]), 4)
    assert torch.equal(out[0], source[0, 0:4, 0:4])
    assert torch.equal(out[1], source[1, 6:10, 8:12])
    assert torch.equal(out[2], source[1, 2:6, 3:7])
    images = torch.arange(10 * 12 * 3).reshape(1, 10, 12, 3)
    out = crop_patches(images, boxes, torch.zeros(3, dtype=torch.long), 4)
    assert torch.equal(out[2], images[0, 2:6, 3:7].permute(2, 0, 1))


def test_decode_masks_reads_compressed_rles():
    masks = np.zeros((2, 9, 11), np.uint8)
    masks[0, 1:4, 2:9] = 1
    masks[1, 5:9, 0:3] = 1
    rles = [mask_utils.encode(np.asfortranarray(m)) for m in masks]
    decoded = decode_masks(rles, 9, 11)
    assert decoded.dtype == torch.bool and torch.equal(decoded, torch.from_numpy(masks).bool())
    assert decode_masks([], 9, 11).shape == (0, 9, 11)
