"""The mask codec: compressed RLE strings decoded like pycocotools, conversions between the three forms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from densevision.data.masks import (
    annotation_to_mask,
    decode_masks,
    encode_masks,
    rle_areas,
    rle_boxes,
    rle_ious,
    rle_string_counts,
    segmentation_problem,
    to_rle,
)


def _runs(mask: np.ndarray) -> list[int]:
    flat = mask.flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    return ([0] if flat[0] else []) + runs


@pytest.mark.parametrize("seed", range(4))
def test_rle_string_counts_equal_pycocotools(seed):
    rng = np.random.default_rng(seed)
    for _ in range(20):
        h, w = (int(v) for v in rng.integers(1, 200, 2))
        mask = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        if rng.random() < 0.3:
            mask = np.zeros((h, w), np.uint8)
            mask[h // 3:, : w // 2] = 1  # long runs: multi-character tokens and negative differences
        counts = mask_utils.encode(np.asfortranarray(mask))["counts"]
        assert rle_string_counts(counts).tolist() == _runs(mask)
        assert rle_string_counts(counts.decode()).tolist() == _runs(mask)


@pytest.mark.parametrize("counts", ["!!", "ab\x00c", "é", "0" * 3 + "o", "`" * 8 + "0"])
def test_malformed_strings_are_refused(counts):
    assert rle_string_counts(counts) is None
    assert "not a valid compressed RLE string" in segmentation_problem({"size": [4, 4], "counts": counts}, 4, 4)


def test_three_forms_decode_alike():
    mask = np.zeros((30, 40), np.uint8)
    mask[5:20, 10:30] = 1
    compressed = mask_utils.encode(np.asfortranarray(mask))
    forms = [
        [[10, 5, 30, 5, 30, 20, 10, 20]],
        {"size": [30, 40], "counts": _runs(mask)},
        {"size": [30, 40], "counts": compressed["counts"].decode()},
        compressed,
    ]
    for seg in forms:
        assert segmentation_problem(seg, 30, 40) is None
        assert np.array_equal(mask_utils.decode(to_rle(seg, 30, 40)), mask) or isinstance(seg, list)
        assert annotation_to_mask(seg, 30, 40).sum() >= 300
    assert annotation_to_mask([], 30, 40).sum() == 0


def test_encode_decode_boxes_areas_ious():
    masks = torch.zeros(2, 30, 40, dtype=torch.bool)
    masks[0, 2:12, 3:20] = True
    masks[1, 15:28, 10:35] = True
    rles = encode_masks(masks)
    assert all(isinstance(r["counts"], str) and r["size"] == [30, 40] for r in rles)
    assert torch.equal(decode_masks(rles, 30, 40), masks)
    assert rle_boxes(rles) == [[3.0, 2.0, 17.0, 10.0], [10.0, 15.0, 25.0, 13.0]]
    assert rle_areas(rles) == [170, 325] and rle_areas(rles * 200) == [170, 325] * 200 and rle_areas([]) == []
    assert np.allclose(rle_ious(rles, rles), np.eye(2))
    assert encode_masks(masks[:0]) == [] and decode_masks([], 30, 40).shape == (0, 30, 40)
    assert rle_ious([], rles).shape == (0, 2)
