"""Boundary patch proposals of BPR (Tang et al., "Look Closer to Segment Better", CVPR 2021).

A pixel is on the boundary of a binary mask when its 3×3 neighbourhood (zero padding: outside the image is
background) holds both foreground and background; with ``s`` the neighbourhood's foreground count, its score
is ``min(|s − 9|, s) / 4.5`` (highest where the neighbourhood is evenly mixed). Every boundary pixel proposes
a square box of ``patch_size`` centred on it; NMS over those boxes (per instance) keeps a sparse cover of the
boundary, and kept boxes that leave the image are shifted back inside.

Everything is vectorised over pixels and instances: each instance is cropped to its box plus a one-pixel
margin (the only place where its boundary can be), crops of similar size are batched (sizes bucketed by
powers of two, so padding wastes at most a factor of four), and NMS runs once for all instances with
``batched_nms``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import batched_nms

from densevision.data.images import ImageRecord, load_image
from densevision.data.masks import decode_masks
from densevision.refine.selection import select_instances, select_patches

DEFAULT_PATCH_SIZE = 64
DEFAULT_NMS_IOU = 0.25

__all__ = [
    "DEFAULT_NMS_IOU",
    "DEFAULT_PATCH_SIZE",
    "PatchChunk",
    "boundary_map",
    "boundary_pixels",
    "boundary_scores",
    "crop_patches",
    "decode_masks",
    "mask_boxes",
    "neighbourhood_count",
    "patch_chunks",
    "propose_patches",
]


def neighbourhood_count(masks: torch.Tensor) -> torch.Tensor:
    """Foreground count of each pixel's 3×3 neighbourhood, zero padded: N×H×W binary -> N×H×W uint8 (0–9)."""
    m = torch.nn.functional.pad(masks.to(torch.uint8), (1, 1, 1, 1))
    rows = m[:, :-2] + m[:, 1:-1] + m[:, 2:]
    return rows[:, :, :-2] + rows[:, :, 1:-1] + rows[:, :, 2:]


def boundary_scores(masks: torch.Tensor) -> torch.Tensor:
    """BPR boundary score ``min(|s − 9|, s) / 4.5`` of every pixel: N×H×W binary -> N×H×W float32 in [0, 8/9].

    Non-zero exactly on the boundary map (a band about two pixels wide straddling the contour, object pixels
    on the image edge included).
    """
    s = neighbourhood_count(masks).float()
    return torch.minimum(9.0 - s, s) / 4.5


def boundary_map(masks: torch.Tensor) -> torch.Tensor:
    """N×H×W binary -> N×H×W bool: pixels whose 3×3 neighbourhood holds both foreground and background."""
    s = neighbourhood_count(masks)
    return (s > 0) & (s < 9)


def mask_boxes(masks: torch.Tensor) -> torch.Tensor:
    """Tight boxes of N×H×W binary masks as N×4 int64 ``(x0, y0, x1, y1)``, end exclusive; empty masks give
    ``(0, 0, 0, 0)``."""
    _, h, w = masks.shape
    binary = masks.view(torch.uint8) if masks.dtype == torch.bool else masks.bool().view(torch.uint8)
    rows, cols = binary.amax(2) > 0, binary.amax(1) > 0  # uint8 max: far faster than bool any on the CPU
    ar_h = torch.arange(h, device=masks.device)
    ar_w = torch.arange(w, device=masks.device)
    y0 = torch.where(rows, ar_h, h).amin(1)
    y1 = torch.where(rows, ar_h + 1, 0).amax(1)
    x0 = torch.where(cols, ar_w, w).amin(1)
    x1 = torch.where(cols, ar_w + 1, 0).amax(1)
    boxes = torch.stack([x0, y0, x1, y1], 1).long()
    return torch.where((x1 > x0)[:, None], boxes, 0)


def _size_buckets(heights: torch.Tensor, widths: torch.Tensor) -> list[torch.Tensor]:
    """Indices of crops grouped so that, within a group, each side is at most twice the smallest."""
    key = torch.ceil(torch.log2(heights.float())).long() * 64 + torch.ceil(torch.log2(widths.float())).long()
    order = torch.argsort(key, stable=True)
    _, counts = torch.unique_consecutive(key[order], return_counts=True)
    return list(torch.split(order, counts.tolist()))


def boundary_pixels(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every boundary pixel of N×H×W binary masks, found on per-instance crops.

    Returns ``(instance, y, x, score)``, four K tensors (int64, int64, int64, float32), grouped by crop size.
    Crops of a size bucket are gathered in one indexing of a sliding-window view of ``masks``.
    """
    device = masks.device
    n, h, w = masks.shape
    boxes = mask_boxes(masks)
    present = torch.nonzero(boxes[:, 2] > boxes[:, 0]).flatten()
    empty = torch.empty(0, dtype=torch.long, device=device)
    if present.numel() == 0:
        return empty, empty, empty, torch.empty(0, device=device)
    x0 = (boxes[present, 0] - 1).clamp(min=0)
    y0 = (boxes[present, 1] - 1).clamp(min=0)
    cw = (boxes[present, 2] + 1).clamp(max=w) - x0
    ch = (boxes[present, 3] + 1).clamp(max=h) - y0
    found = []
    for group in _size_buckets(ch, cw):
        gh, gw = int(ch[group].max()), int(cw[group].max())
        # a gh×gw window holding the crop; moved up/left at the bottom/right image edge, it only adds pixels
        # outside the instance's box, which are background, so the scores inside the crop do not change
        oy, ox = y0[group].clamp(max=h - gh), x0[group].clamp(max=w - gw)
        windows = masks.unfold(1, gh, 1).unfold(2, gw, 1)
        scores = boundary_scores(windows[present[group], oy, ox])
        k, cy, cx = torch.nonzero(scores, as_tuple=True)
        found.append((present[group[k]], cy + oy[k], cx + ox[k], scores[k, cy, cx]))
    return tuple(torch.cat(parts) for parts in zip(*found, strict=True))


def propose_patches(
    masks: torch.Tensor, *, patch_size: int = DEFAULT_PATCH_SIZE, nms_iou: float = DEFAULT_NMS_IOU
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boundary patch boxes of every instance.

    Args:
        masks: N×H×W binary masks of one image.
        patch_size: side of the square patches (64 in BPR).
        nms_iou: IoU threshold of the NMS over the boxes centred on boundary pixels (lower: fewer patches).

    Returns:
        ``(boxes, instance)``: K×4 int64 ``(x0, y0, x1, y1)`` (end exclusive, ``x1 − x0 = patch_size``) and
        the K instance indices, sorted by instance, without repeats. Boxes lie inside the image unless the
        image is smaller than a patch, in which case they start at 0 and overhang the bottom/right edge.
    """
    n, h, w = masks.shape
    instance, y, x, score = boundary_pixels(masks)
    half = patch_size // 2
    centred = torch.stack([x - half, y - half, x - half + patch_size, y - half + patch_size], 1)
    keep = batched_nms(centred.float(), score, instance, nms_iou)
    x0 = centred[keep, 0].clamp(min=0).clamp(max=max(w - patch_size, 0))
    y0 = centred[keep, 1].clamp(min=0).clamp(max=max(h - patch_size, 0))
    # boxes shifted onto the same place would only repeat a prediction: keep one of each
    inst, x0, y0 = torch.unique(torch.stack([instance[keep], x0, y0], 1), dim=0).unbind(1)
    return torch.stack([x0, y0, x0 + patch_size, y0 + patch_size], 1), inst


def crop_patches(
    source: torch.Tensor, boxes: torch.Tensor, index: torch.Tensor, patch_size: int
) -> torch.Tensor:
    """Cut square patches out of a stack of maps in one gather over a sliding-window view (no per-pixel
    index arithmetic).

    Args:
        source: B×H×W maps or B×H×W×C images (any dtype, any strides).
        boxes: K×4 int64 ``(x0, y0, x1, y1)`` with ``x0, y0 >= 0`` and ``x1 - x0 = y1 - y0 = patch_size``;
            parts beyond the bottom/right edge (images smaller than a patch) read 0.
        index: K indices into ``source``'s first dimension.

    Returns:
        K×P×P patches of maps, K×C×P×P patches of images (channels first, as networks take them).
    """
    b, h, w = source.shape[:3]
    if h < patch_size or w < patch_size:
        padded = source.new_zeros((b, max(h, patch_size), max(w, patch_size), *source.shape[3:]))
        padded[:, :h, :w] = source
        source = padded
    windows = source.unfold(1, patch_size, 1).unfold(2, patch_size, 1)
    return windows[index, boxes[:, 1], boxes[:, 0]]


@dataclass
class PatchChunk:
    """Up to ``chunk`` instances of one image and their boundary patches (K of them, P = patch size)."""

    image_id: int
    keys: list[int]
    """The caller's keys of the instances (e.g. positions in a results list)."""
    masks: torch.Tensor
    """N×H×W bool instance masks."""
    boxes: torch.Tensor
    """K×4 int64 patch boxes, as :func:`propose_patches` gives them."""
    instance: torch.Tensor
    """K indices into ``masks``."""
    images: torch.Tensor
    """K×3×P×P uint8 image patches."""
    coarse: torch.Tensor
    """K×P×P bool mask patches."""


def patch_chunks(
    items: Iterable[tuple[ImageRecord, Sequence[int], Sequence[dict]]],
    *,
    patch_size: int = DEFAULT_PATCH_SIZE,
    nms_iou: float = DEFAULT_NMS_IOU,
    chunk: int = 16,
    min_area: int = 0,
    device: torch.device | str = "cpu",
    timer: Callable[[str], contextlib.AbstractContextManager] | None = None,
    image_loader: Callable[[ImageRecord], np.ndarray] = load_image,
) -> Iterator[PatchChunk]:
    """The one loop from images to boundary patches: per ``(image record, keys, compressed RLEs)`` item, read
    the image with ``image_loader`` (H×W×3 uint8; by default the record's file, its size checked, errors naming
    json and image id), then per ``chunk`` instances decode the masks, propose patches and crop image and mask
    patches, all on ``device``. Instances whose mask covers fewer than ``min_area`` pixels get no patches
    (:func:`~densevision.refine.selection.select_instances`).

    ``timer(stage)``, if given, is entered around the ``"read"`` and ``"extract"`` work.
    """
    stage = timer or (lambda _: contextlib.nullcontext())
    for record, keys, rles in items:
        h, w = record.height, record.width
        with stage("read"):
            image = torch.from_numpy(image_loader(record)).to(device)[None]
        for start in range(0, len(keys), chunk):
            with stage("extract"):
                masks = decode_masks(rles[start:start + chunk], h, w).to(device)
                boxes, instance = propose_patches(masks, patch_size=patch_size, nms_iou=nms_iou)
                if min_area > 0:
                    refine = select_instances(masks.sum((1, 2)), min_area)
                    boxes, instance = select_patches(boxes, instance, refine)
                images = crop_patches(image, boxes, torch.zeros_like(instance), patch_size)
                coarse = crop_patches(masks, boxes, instance, patch_size)
            yield PatchChunk(record.image_id, list(keys[start:start + chunk]), masks, boxes, instance, images, coarse)
