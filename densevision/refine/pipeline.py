"""Refining a COCO results list end to end, in memory: proposals, network, merge.

The refinement rule (:mod:`densevision.refine.selection`) first picks the detections to refine; the others are
passed through with their coarse masks, never decoded. Images are read one at a time and their detections
decoded a few at a time (``chunk``); the patches of all instances of all images form one stream that the network
sees in full batches of ``batch_size``; an instance chunk is merged and encoded as soon as its last patch is
predicted. Memory therefore depends on the batch size and the chunk size, not on the number of instances or
images. Proposals, cropping and merging run on ``device``.
"""

from __future__ import annotations

import os
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from densevision.data.coco import validate_coco
from densevision.data.images import ImageRecord, load_image, record_from_entry
from densevision.data.masks import encode_masks, rle_boxes
from densevision.data.results import load_results
from densevision.errors import DataError, DenseVisionError
from densevision.refine.config import RefineRuleConfig
from densevision.refine.network import RefineNet
from densevision.refine.patches import DEFAULT_NMS_IOU, patch_chunks
from densevision.refine.selection import check_rule, keep_detection_boxes, merge_with_margin, skip_reasons

STAGES = ("read", "extract", "network", "merge")


@dataclass
class _Chunk:
    """Detections of one image being refined together; ``probs`` fills as batches run."""

    positions: list[int]
    results: list[dict]
    masks: torch.Tensor
    boxes: torch.Tensor
    instance: torch.Tensor
    images: torch.Tensor
    coarse: torch.Tensor
    probs: torch.Tensor
    filled: int = 0

    @property
    def num_patches(self) -> int:
        return len(self.boxes)


class _Timer:
    """Wall time per pipeline stage (synchronising CUDA at stage ends when enabled)."""

    def __init__(self, stats: dict[str, float] | None, device: torch.device) -> None:
        self.stats, self.device = stats, device
        if stats is not None:
            for stage in STAGES:
                stats.setdefault(stage, 0.0)

    @contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        if self.stats is None:
            yield
            return
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.stats[stage] += time.perf_counter() - start


def check_images(images: Any, source: str = "images") -> dict[int, dict]:
    """``{id: info}`` of a COCO ``images`` list (ids, file names, sizes checked)."""
    if not isinstance(images, list):
        raise DataError(f"{source}: 'images' must be a list of image entries")
    problems = validate_coco({"images": images, "annotations": [], "categories": []}, source)
    if problems:
        raise DataError(problems[0])
    return {img["id"]: img for img in images}


def check_results(
    results: Sequence[dict] | str | os.PathLike, images: Sequence[dict]
) -> list[dict[str, Any]]:
    """Validated results (image ids of ``images``, integer categories, finite scores, segmentations that fit
    their image, boxes where given), masks as compressed RLE."""
    return load_results(results, {img["id"]: img for img in images}, None, ("segmentation",), ("bbox",))


def _chunks(
    records: dict[int, ImageRecord],
    results: list[dict],
    selected: list[int],
    *,
    patch_size: int,
    nms_iou: float,
    chunk: int,
    device: torch.device,
    timer: _Timer,
    image_loader: Callable[[ImageRecord], np.ndarray],
) -> Iterator[_Chunk]:
    """The patch chunks of the ``selected`` positions of ``results``, image by image."""
    by_image: dict[int, list[int]] = defaultdict(list)
    for position in selected:
        by_image[results[position]["image_id"]].append(position)
    items = ((records[image_id], positions, [results[p]["segmentation"] for p in positions])
             for image_id, positions in by_image.items())
    for c in patch_chunks(items, patch_size=patch_size, nms_iou=nms_iou, chunk=chunk, device=device, timer=timer,
                          image_loader=image_loader):
        probs = torch.empty((len(c.boxes), patch_size, patch_size), device=device)
        yield _Chunk(c.keys, [results[p] for p in c.keys], c.masks, c.boxes, c.instance, c.images, c.coarse, probs)


def _predict(model: RefineNet, parts: list[tuple[_Chunk, int, int]], timer: _Timer) -> Iterator[_Chunk]:
    """Run one batch made of ``(chunk, start, end)`` patch ranges; yield the chunks it completes."""
    with timer("network"):
        images = torch.cat([c.images[a:b] for c, a, b in parts]).float().div_(255.0)
        coarse = torch.cat([c.coarse[a:b] for c, a, b in parts])
        probs = model.predict(images, coarse)
    offset = 0
    for c, a, b in parts:
        c.probs[a:b] = probs[offset:offset + b - a]
        offset += b - a
        c.filled += b - a
        if c.filled == c.num_patches:
            yield c


def _batched(chunks: Iterator[_Chunk], model: RefineNet, batch_size: int, timer: _Timer) -> Iterator[_Chunk]:
    """Chunks with their probabilities filled, the patch stream cut into full batches across chunks."""
    parts: list[tuple[_Chunk, int, int]] = []
    count = 0
    for c in chunks:
        if c.num_patches == 0:
            yield c
            continue
        start = 0
        while start < c.num_patches:
            take = min(batch_size - count, c.num_patches - start)
            parts.append((c, start, start + take))
            count += take
            start += take
            if count == batch_size:
                yield from _predict(model, parts, timer)
                parts, count = [], 0
    if parts:
        yield from _predict(model, parts, timer)


def _outputs(results: list[dict], rles: list[dict], boxes: str) -> list[dict[str, Any]]:
    """Output entries of ``results`` with the masks ``rles`` (compressed RLE, ``counts`` as str or bytes);
    ``bbox`` the detection's own with ``boxes == "keep"``, else the mask's."""
    rles = [{"size": rle["size"], "counts": rle["counts"] if isinstance(rle["counts"], str)
             else rle["counts"].decode("ascii")} for rle in rles]
    entries = [{"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
                "segmentation": rle, "bbox": box} for r, rle, box in zip(results, rles, rle_boxes(rles), strict=True)]
    return keep_detection_boxes(results, entries) if boxes == "keep" else entries


def refine_results(
    images: Sequence[dict],
    image_root: str | os.PathLike,
    results: Sequence[dict] | str | os.PathLike,
    model: RefineNet,
    *,
    nms_iou: float = DEFAULT_NMS_IOU,
    rule: RefineRuleConfig | None = None,
    batch_size: int = 64,
    device: str | torch.device = "cpu",
    chunk: int = 16,
    progress: bool = True,
    stats: dict[str, float] | None = None,
    counts: Counter[str] | None = None,
    source: str = "images",
    image_loader: Callable[[ImageRecord], np.ndarray] = load_image,
) -> list[dict[str, Any]]:
    """Refine the masks of a COCO results list with a BPR network.

    Args:
        images: COCO image entries (``id``, ``file_name`` relative to ``image_root``, ``height``, ``width``).
        image_root: the image folder.
        results: COCO results (list or json path) with polygon or RLE ``segmentation``; every ``image_id``
            must be one of ``images``.
        model: a :class:`RefineNet` (e.g. :func:`densevision.refine.network.load_refine_net`); its
            ``patch_size`` is used. It is moved to ``device`` and put in eval mode.
        nms_iou: patch proposal NMS threshold (0.25 for COCO-like data, 0.55 in BPR's Cityscapes setting).
        rule: what is refined and kept (default :class:`~densevision.refine.config.RefineRuleConfig`: the
            detector's boxes and scores kept, every score and any number per image, instances under 48² coarse
            pixels left alone, margin 0.1). Detections the rule skips keep their coarse mask.
        batch_size: patches per network batch (bounds the device memory).
        device: where proposals, the network and the merge run.
        chunk: detections decoded and merged together.
        progress: show a progress bar over detections.
        stats: if given, receives the seconds spent per stage (``read``, ``extract``, ``network``, ``merge``).
        counts: if given, receives how many detections were ``refined`` and how many were skipped per reason
            (:data:`~densevision.refine.selection.SKIP_REASONS`; only reasons that occurred).
        source: the json the image entries come from, named in errors about them.
        image_loader: reads an image entry's record as H×W×3 uint8 RGB (default: its file under ``image_root``,
            size checked); an image held in memory needs no file.

    Returns:
        The refined results in input order: ``image_id``, ``category_id`` and ``score`` kept, ``segmentation``
        as compressed RLE, ``bbox`` (XYWH) the detection's own (the coarse mask's box where it has none), or
        recomputed from the refined mask with ``rule.boxes == "from-mask"``.
    """
    rule = rule or RefineRuleConfig()
    check_rule(rule)
    if batch_size < 1 or chunk < 1:
        raise DenseVisionError(f"batch size and chunk must be positive, got {batch_size} and {chunk}")
    if not 0.0 <= nms_iou <= 1.0:
        raise DenseVisionError(f"NMS IoU threshold must be in [0, 1], got {nms_iou}")
    infos = check_images(list(images) if isinstance(images, (list, tuple)) else images, source)
    records = {i: record_from_entry(info, image_root, source) for i, info in infos.items()}
    checked = check_results(results, list(infos.values()))
    device = torch.device(device)
    model = model.to(device).eval()
    timer = _Timer(stats, device)
    reasons = skip_reasons(checked, rule)
    if counts is not None:
        counts.update(reason or "refined" for reason in reasons)
    selected = [p for p, reason in enumerate(reasons) if reason is None]
    skipped = [p for p, reason in enumerate(reasons) if reason is not None]
    refined: list[dict[str, Any] | None] = [None] * len(checked)
    kept = [checked[p] for p in skipped]
    for position, entry in zip(skipped, _outputs(kept, [r["segmentation"] for r in kept], rule.boxes), strict=True):
        refined[position] = entry
    chunks = _chunks(records, checked, selected, patch_size=model.patch_size, nms_iou=nms_iou, chunk=chunk,
                     device=device, timer=timer, image_loader=image_loader)
    with tqdm(total=len(selected), desc="bpr refine", unit="inst", disable=not progress) as bar:
        for c in _batched(chunks, model, batch_size, timer):
            with timer("merge"):
                masks = merge_with_margin(c.masks, c.probs, c.boxes, c.instance, rule.margin)
                entries = _outputs(c.results, encode_masks(masks), rule.boxes)
            for position, entry in zip(c.positions, entries, strict=True):
                refined[position] = entry
            bar.update(len(c.positions))
    return refined
