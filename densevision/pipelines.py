"""Tasks chained into one flow: a densevision detector's boxes fed to a top-down pose network
(``densevision pose predict --detector``).

Task packages never import each other, so the glue between two of them lives here, above both: detection runs
through :mod:`densevision.detection.predict` (checkpoint loading, batched inference to COCO results, as
``detect predict``), its boxes become :class:`~densevision.data.keypoints.PoseInstance` s of the pose network's
categories.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from densevision.data.images import ImageDataset, ImageRecord
from densevision.data.keypoints import KeypointLayout, PoseInstance
from densevision.detection.predict import DetectorInfo, load_detector, run_detector
from densevision.errors import DataError
from densevision.pose.predict import box_instances


def check_shared_categories(info: DetectorInfo, layout: KeypointLayout, source: str) -> list[int]:
    """The category ids the detector and the pose network share (sorted); raise ``DataError`` when there is none
    or when a shared id names different categories (their boxes would be read as the wrong objects)."""
    detector = {int(c["id"]): str(c["name"]) for c in info.categories}
    shared = sorted(set(detector) & set(layout.categories))
    pose = {i: layout.categories[i].name for i in shared}
    clash = [f"{i} is {detector[i]!r} for the detector, {pose[i]!r} for the pose network" for i in shared
             if detector[i].lower() != pose[i].lower()]
    if clash:
        raise DataError(f"{source}: category {clash[0]}")
    if not shared:
        ours = ", ".join(f"{c.id} ({c.name})" for c in layout.categories.values())
        theirs = ", ".join(f"{i} ({n})" for i, n in detector.items())
        raise DataError(f"{source}: the detector's categories ({theirs}) include none of the pose network's "
                        f"({ours})")
    return shared


def detector_pose_instances(
    detector: str | os.PathLike,
    records: Sequence[ImageRecord],
    layout: KeypointLayout,
    *,
    min_score: float = 0.0,
    device: str | torch.device = "cpu",
    batch_size: int = 2,
    trust_checkpoint: bool = False,
) -> list[PoseInstance]:
    """Run the detector (a ``detect train`` run directory or checkpoint) on ``records`` and return its boxes of
    the pose network's categories scoring at least ``min_score`` (the detector's own score threshold applies
    first), in the order of the detections, each with its detection score."""
    model, info = load_detector(detector, device=device, trust_checkpoint=trust_checkpoint)
    check_shared_categories(info, layout, str(detector))
    results = run_detector(model, ImageDataset(records), info.label_to_cat, batch_size=batch_size,
                           score_thr=min_score)
    return box_instances(results, records, layout, min_score=min_score, source=str(detector))
