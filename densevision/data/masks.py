"""The COCO mask codec: polygons, uncompressed and compressed RLE, bitmaps; their validation; boxes and areas.

Every segmentation a file gives is checked by :func:`segmentation_problem` before pycocotools sees it: its C
decoder trusts the run lengths (an empty or garbage ``counts`` string decodes to uninitialised memory, a run
past ``height * width`` writes beyond the mask), so compressed strings are decoded here first and their run
lengths must add up to ``height * width``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from numbers import Real
from typing import Any

import numpy as np
import torch
from pycocotools import mask as mask_utils

FAR_OUTSIDE = 10
"""Coordinates further than ``FAR_OUTSIDE`` image sides from the image are refused as absurd."""

_MAX_TOKEN_CHARS = 7  # a 32-bit run length takes at most 7 characters of 5 bits


def is_number(value: Any) -> bool:
    """A finite int or float (numpy scalars included), not a bool."""
    return isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)


def is_integer(value: Any) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def rle_string_counts(counts: str | bytes) -> np.ndarray | None:
    """The run lengths a compressed RLE string encodes (pycocotools' ``rleFrString``) as int64, or None when
    the string is not well formed (characters outside ``0``..``o``, a truncated last run, a run over 32 bits)."""
    if isinstance(counts, str):
        try:
            counts = counts.encode("ascii")
        except UnicodeEncodeError:
            return None
    c = np.frombuffer(counts, dtype=np.uint8).astype(np.int64) - 48
    if c.size == 0:
        return np.zeros(0, dtype=np.int64)
    if c.min() < 0 or c.max() > 63 or c[-1] & 0x20:
        return None
    ends = np.flatnonzero((c & 0x20) == 0)
    starts = np.concatenate([[0], ends[:-1] + 1])
    lengths = ends - starts + 1
    if lengths.max() > _MAX_TOKEN_CHARS:
        return None
    shift = 5 * (np.arange(c.size) - np.repeat(starts, lengths))
    x = np.add.reduceat((c & 0x1F) << shift, starts)
    x = np.where(c[ends] & 0x10, x | (np.int64(-1) << (5 * lengths)), x)
    # from the third run on, each run is stored as the difference to the run two places before
    out = x.copy()
    out[1::2] = np.cumsum(x[1::2])
    out[2::2] = np.cumsum(x[2::2])
    return out


def _polygon_problem(poly: Any, height: int, width: int) -> str | None:
    if not isinstance(poly, list) or not all(isinstance(v, Real) and not isinstance(v, bool) for v in poly):
        return "segmentation polygon must be a list of numbers"
    if len(poly) < 6 or len(poly) % 2:
        return f"segmentation polygon has {len(poly)} coordinates; a polygon must list 3 or more x, y pairs"
    if not all(math.isfinite(v) for v in poly):
        return "segmentation polygon has a non-finite coordinate"
    xs, ys = poly[0::2], poly[1::2]
    far = next((v for v in xs if abs(v) > FAR_OUTSIDE * width), None)
    far = far if far is not None else next((v for v in ys if abs(v) > FAR_OUTSIDE * height), None)
    if far is not None:
        return f"segmentation polygon coordinate {far:g} lies far outside the {width}x{height} image"
    return None


def segmentation_problem(seg: Any, height: int, width: int) -> str | None:
    """What is wrong with a COCO ``segmentation`` (polygons, uncompressed or compressed RLE) of an image of
    ``height``×``width``, or None when pycocotools can safely decode it."""
    if isinstance(seg, list):
        if not seg:
            return "segmentation is an empty polygon list"
        for poly in seg:
            problem = _polygon_problem(poly, height, width)
            if problem:
                return problem
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, (list, tuple)) and len(size) == 2 and all(is_integer(v) for v in size)):
            return f"RLE segmentation needs 'size': [height, width], got {size!r:.40}"
        if [int(v) for v in size] != [height, width]:
            return f"segmentation size {list(size)} does not match the image's [{height}, {width}]"
        if isinstance(counts, list):
            if not all(is_integer(v) and v >= 0 for v in counts):
                return "segmentation 'counts' must be non-negative integers"
            total = sum(int(v) for v in counts)
        elif isinstance(counts, (str, bytes)):
            runs = rle_string_counts(counts)
            if runs is None or (runs < 0).any():
                return f"segmentation 'counts' {counts!r:.40} is not a valid compressed RLE string"
            total = int(runs.sum())
        else:
            return f"segmentation 'counts' must be a string or a list, not {type(counts).__name__}"
        if total != height * width:
            return f"segmentation 'counts' do not add up to height × width ({total} != {height * width})"
        return None
    return f"'segmentation' must be an RLE object or polygons, not {type(seg).__name__}"


def to_rle(seg: list | dict, height: int, width: int) -> dict[str, Any]:
    """One compressed RLE (``counts`` as bytes) of a checked segmentation: polygons merged, uncompressed RLE
    compressed, compressed RLE as it is; an empty polygon list is an empty mask."""
    if isinstance(seg, list):
        if not seg:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(seg, height, width))
    if isinstance(seg["counts"], list):
        return mask_utils.frPyObjects({"size": [height, width], "counts": seg["counts"]}, height, width)
    return {"size": [height, width], "counts": seg["counts"]}


def annotation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """Decode polygons, uncompressed or compressed RLE to an H×W uint8 {0,1} mask."""
    return mask_utils.decode(to_rle(segmentation, height, width)).astype(np.uint8)


def decode_masks(rles: Sequence[dict], height: int, width: int) -> torch.Tensor:
    """Compressed COCO RLEs -> N×H×W bool masks (a view of pycocotools' column-major array, no copy)."""
    if not rles:
        return torch.zeros((0, height, width), dtype=torch.bool)
    arr = mask_utils.decode(list(rles)).view(np.bool_)
    return torch.from_numpy(arr).permute(2, 0, 1)


def encode_masks(masks: torch.Tensor) -> list[dict[str, Any]]:
    """N×H×W bool/uint8 masks -> compressed RLEs (``counts`` as str, ``size`` [H, W])."""
    if masks.shape[0] == 0:
        return []
    arr = np.asfortranarray(masks.to(torch.uint8).cpu().numpy().transpose(1, 2, 0))
    rles = mask_utils.encode(arr)
    for rle in rles:
        rle["counts"] = rle["counts"].decode("ascii")
    return rles


def rle_boxes(rles: Sequence[dict]) -> list[list[float]]:
    """Tight XYWH boxes of compressed RLEs (``[0, 0, 0, 0]`` for empty masks)."""
    return mask_utils.toBbox(list(rles)).tolist() if rles else []


def rle_areas(rles: Sequence[dict]) -> list[int]:
    """Foreground pixel counts of compressed RLEs (asked 255 at a time: pycocotools' ``area`` holds the count in
    a uint8, which NumPy 2 refuses to overflow)."""
    rles = list(rles)
    return [a for start in range(0, len(rles), 255) for a in mask_utils.area(rles[start:start + 255]).tolist()]


def rle_ious(dt: Sequence[dict], gt: Sequence[dict]) -> np.ndarray:
    """D×G mask IoU of compressed RLEs (float64; no crowd handling)."""
    if not dt or not gt:
        return np.zeros((len(dt), len(gt)))
    return np.asarray(mask_utils.iou(list(dt), list(gt), [0] * len(gt)), dtype=np.float64)
