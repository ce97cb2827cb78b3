"""What BPR refines and what it keeps of the detector's output.

Refinement must not make a detector's output worse, so:

* **Boxes and scores** stay the detector's (:func:`keep_detection_boxes`); recomputing each box from its refined
  mask (``--boxes from-mask``) moves boxes the detector placed well and costs bbox AP.
* **Low-scoring detections** keep their coarse mask (:func:`skip_reasons`): those scoring below ``score_thr``
  and those beyond the ``top_k`` highest-scoring of their image. They matter least to AP and are often most of a
  results file (a detector's 0.05-score tail), so leaving them alone saves most of the network's time.
* **Small instances** keep their coarse mask (:func:`select_instances`): around an object whose coarse mask
  covers fewer than ``min_area`` pixels a 64 px patch is mostly context, and the refiner makes such masks worse.
  An instance that is not selected is never decoded nor given patches (:func:`select_patches` drops the patches
  of unselected instances where they exist), so its coarse mask is passed through untouched.
* **Uncertain pixels** may keep their coarse value (:func:`merge_with_margin`): a covered pixel takes the
  refiner's decision only where the patches' averaged probability is more than ``margin`` away from 0.5.

:func:`patch_outside_fraction` measures the other candidate of the tuning benchmark (dropping patches that lie
mostly outside their instance's box). ``benchmarks/bpr_refine_rule.py`` compared the rules on a tuning split
disjoint from the demo's validation split (seed 1, 100 images, the demo's detector at 224²) and chose the
defaults of :class:`~densevision.refine.config.RefineRuleConfig`: boxes kept, instances of at least 48² coarse
pixels refined, margin 0.1. They gave the highest
segm AP + Boundary AP (+1.66, +3.17) among the rules that lowered none of bbox AP, segm AP, AP50, APs and
Boundary AP; refining every instance lowered segm AP50 by 2.68 and APs by 1.53 there.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from pycocotools import mask as mask_utils

from densevision.data.masks import rle_areas
from densevision.errors import DenseVisionError
from densevision.refine.config import RefineRuleConfig
from densevision.refine.merge import merge_patches

SKIP_REASONS = ("score", "top_k", "area")
"""Why a detection keeps its coarse mask, in the order :func:`skip_reasons` applies them."""


def check_rule(rule: RefineRuleConfig) -> None:
    """Refuse a rule with an unknown box mode, a score threshold that is not a finite number, a top-k below 1,
    a negative minimum area or a margin outside [0, 0.5]."""
    if rule.boxes not in ("keep", "from-mask"):
        raise DenseVisionError(f"box mode must be keep or from-mask, got {rule.boxes!r}")
    if not math.isfinite(rule.score_thr):
        raise DenseVisionError(f"score threshold must be a finite number, got {rule.score_thr}")
    if rule.top_k is not None and rule.top_k < 1:
        raise DenseVisionError(f"top-k must be at least 1 (leave it unset to refine any number), got {rule.top_k}")
    if rule.min_area < 0:
        raise DenseVisionError(f"minimum refined area must be >= 0 pixels, got {rule.min_area}")
    if not 0.0 <= rule.margin <= 0.5:
        raise DenseVisionError(f"refinement margin must be in [0, 0.5], got {rule.margin}")


def skip_reasons(results: Sequence[Mapping[str, Any]], rule: RefineRuleConfig) -> list[str | None]:
    """Per detection, why it keeps its coarse mask (one of :data:`SKIP_REASONS`), None for those refined.

    The reasons apply in order: a score below ``rule.score_thr`` (``"score"``); not among the ``rule.top_k``
    highest-scoring detections of its image (``"top_k"``; ties keep the earlier detection); a coarse mask of
    fewer than ``rule.min_area`` pixels (``"area"``, :func:`select_instances`).

    Args:
        results: N detections with ``image_id``, ``score`` and ``segmentation`` as compressed RLE.
        rule: a rule that passed :func:`check_rule`.

    Returns:
        N reasons, in the order of ``results``.
    """
    reasons: list[str | None] = [None if r["score"] >= rule.score_thr else "score" for r in results]
    if rule.top_k is not None:
        by_image: dict[int, list[int]] = defaultdict(list)
        for i, r in enumerate(results):
            if reasons[i] is None:
                by_image[r["image_id"]].append(i)
        for positions in by_image.values():
            for i in sorted(positions, key=lambda p: -results[p]["score"])[rule.top_k:]:
                reasons[i] = "top_k"
    if rule.min_area > 0:
        candidates = [i for i, reason in enumerate(reasons) if reason is None]
        areas = torch.tensor(rle_areas([results[i]["segmentation"] for i in candidates]), dtype=torch.int64)
        for i, refine in zip(candidates, select_instances(areas, rule.min_area).tolist(), strict=True):
            if not refine:
                reasons[i] = "area"
    return reasons


def select_instances(coarse_areas: torch.Tensor, min_area: float) -> torch.Tensor:
    """N coarse mask areas (pixels) -> N bool: the instances to refine, those covering at least ``min_area``
    pixels (``min_area`` 0 refines all of them)."""
    if min_area < 0:
        raise DenseVisionError(f"minimum refined area must be >= 0 pixels, got {min_area}")
    return coarse_areas >= min_area


def select_patches(
    boxes: torch.Tensor, instance: torch.Tensor, refine: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The patches (K×4 ``boxes``, K ``instance`` indices) of the instances where the N bool ``refine`` is
    true, order kept."""
    keep = refine[instance]
    return boxes[keep], instance[keep]


def patch_outside_fraction(
    boxes: torch.Tensor, instance: torch.Tensor, instance_boxes: torch.Tensor
) -> torch.Tensor:
    """Share of each patch's area outside its instance's box.

    Args:
        boxes: K×4 patch boxes ``(x0, y0, x1, y1)``, end exclusive.
        instance: K indices into ``instance_boxes``.
        instance_boxes: N×4 boxes of the instances in the same convention (e.g. of their coarse masks).

    Returns:
        K float32 in [0, 1]: 0 for a patch inside the box, 1 for one that misses it.
    """
    own = instance_boxes[instance]
    w = (torch.minimum(boxes[:, 2], own[:, 2]) - torch.maximum(boxes[:, 0], own[:, 0])).clamp(min=0)
    h = (torch.minimum(boxes[:, 3], own[:, 3]) - torch.maximum(boxes[:, 1], own[:, 1])).clamp(min=0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return 1.0 - (w * h).float() / area.float()


def merge_with_margin(
    coarse: torch.Tensor,
    probs: torch.Tensor,
    boxes: torch.Tensor,
    instance: torch.Tensor,
    margin: float,
) -> torch.Tensor:
    """:func:`~densevision.refine.merge.merge_patches` that keeps the coarse pixel where the refiner is unsure.

    A pixel covered by patches is foreground where their averaged probability exceeds ``0.5 + margin``,
    background where it is at most ``0.5 - margin``, and keeps its coarse value in between; uncovered pixels
    keep the coarse mask. ``margin`` 0 is the plain merge.

    Args:
        coarse: N×H×W binary coarse masks.
        probs: K×P×P patch foreground probabilities.
        boxes: K×4 int64 patch boxes; instance: K indices into ``coarse``.
        margin: in [0, 0.5].

    Returns:
        N×H×W bool masks.
    """
    if not 0.0 <= margin <= 0.5:
        raise DenseVisionError(f"refinement margin must be in [0, 0.5], got {margin}")
    high = merge_patches(coarse, probs, boxes, instance, threshold=0.5 + margin)
    if margin == 0.0:
        return high
    # covered pixels: above 0.5 - margin here; uncovered pixels: the coarse value in both merges
    low = merge_patches(coarse, probs, boxes, instance, threshold=0.5 - margin)
    return high | (low & coarse.bool())


def keep_detection_boxes(
    coarse_results: Sequence[Mapping[str, Any]], refined_results: Sequence[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The refined results with each detection's box and score as the detector gave them.

    Args:
        coarse_results: the detections refined, in the order of ``refined_results``; a detection without a
            ``bbox`` gets the box of its coarse ``segmentation`` (compressed RLE).
        refined_results: their refined versions (``segmentation`` and any other keys are kept).

    Returns:
        New result dicts; ``bbox`` (XYWH floats) and ``score`` are the coarse detection's.
    """
    if len(coarse_results) != len(refined_results):
        raise DenseVisionError(
            f"{len(refined_results)} refined results for {len(coarse_results)} detections")
    kept = []
    for coarse, refined in zip(coarse_results, refined_results, strict=True):
        box = coarse.get("bbox")
        if box is None:
            box = mask_utils.toBbox(coarse["segmentation"]).tolist()
        kept.append({**refined, "bbox": [float(v) for v in box], "score": coarse["score"]})
    return kept
