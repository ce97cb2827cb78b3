"""OKS-NMS: duplicate keypoint instances removed by object keypoint similarity (the official HRNet test's last
step, after rescoring).

Within one image and one category, instances are visited from the highest score down; an instance is dropped
when its OKS with an instance already kept exceeds the threshold (0.9 in the official test). OKS is COCO's
``mean over the K keypoints of exp(−d² / (2·a·(2σ)²))`` with ``a`` the mean of the two instances' areas; as in
the official code, every keypoint counts whatever its confidence, and an instance's area is that of its crop
(the box padded to the network's input aspect ratio, ×1.25).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from densevision.data.keypoints import KeypointLayout, box_to_center_size


def oks(keypoints: np.ndarray, others: np.ndarray, area: float, other_areas: np.ndarray,
        sigmas: Sequence[float]) -> np.ndarray:
    """OKS of one instance's keypoints ``K×2`` (or ``K×3``, the third column ignored) with each of N others'
    ``N×K×2`` (or ``N×K×3``); ``area`` and ``other_areas`` (N) are the instances' areas, ``sigmas`` the K OKS
    sigmas. Returns N values in [0, 1]."""
    var = (2 * np.asarray(sigmas, np.float64)) ** 2
    d2 = ((np.asarray(others, np.float64)[..., :2] - np.asarray(keypoints, np.float64)[None, :, :2]) ** 2).sum(-1)
    mean_area = (area + np.asarray(other_areas, np.float64)) / 2 + np.spacing(1)
    return np.exp(-d2 / var / mean_area[:, None] / 2).mean(-1)


def oks_nms(keypoints: np.ndarray, scores: np.ndarray, areas: np.ndarray, sigmas: Sequence[float],
            threshold: float) -> np.ndarray:
    """Indices of the instances kept, highest score first: ``keypoints`` N×K×2 (or N×K×3), ``scores`` N,
    ``areas`` N; an instance is dropped when its OKS with a kept one is above ``threshold``."""
    keypoints, areas = np.asarray(keypoints, np.float64), np.asarray(areas, np.float64)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep = []
    while order.size:
        first, rest = order[0], order[1:]
        keep.append(first)
        order = rest[oks(keypoints[first], keypoints[rest], areas[first], areas[rest], sigmas) <= threshold]
    return np.asarray(keep, dtype=np.int64)


def oks_nms_results(results: Sequence[dict[str, Any]], layout: KeypointLayout, threshold: float, *,
                    aspect: float) -> list[dict[str, Any]]:
    """COCO keypoint results (``image_id``, ``category_id``, flat ``keypoints``, ``score``, ``bbox`` XYWH) left
    after :func:`oks_nms` per image and category, in their given order. Areas are the crops' (``bbox`` padded to
    ``aspect`` = input width / height, ×1.25); categories without OKS sigmas are left whole."""
    groups: dict[tuple[int, int], list[int]] = {}
    for i, r in enumerate(results):
        groups.setdefault((r["image_id"], r["category_id"]), []).append(i)
    kept: set[int] = set()
    for (_, category_id), members in groups.items():
        sigmas = layout.categories[category_id].sigmas
        if sigmas is None or len(members) == 1:
            kept.update(members)
            continue
        entries = [results[i] for i in members]
        keypoints = np.array([r["keypoints"] for r in entries], np.float64).reshape(len(entries), len(sigmas), 3)
        areas = np.array([np.prod(box_to_center_size(r["bbox"], aspect)[1]) for r in entries])
        scores = np.array([r["score"] for r in entries], np.float64)
        kept.update(members[i] for i in oks_nms(keypoints, scores, areas, sigmas, threshold))
    return [r for i, r in enumerate(results) if i in kept]
