"""Keypoints from boxes: crops, heatmaps (with the flip test), sub-pixel decoding and COCO keypoint results.

Decoding follows the official HRNet code: the heatmap argmax moved a quarter pixel towards the higher neighbour
(inside the map's border), mapped back through the crop's inverse affine transform; the flip test averages the
heatmaps of the crop and of its mirror (flipped back, left/right channels swapped, shifted one pixel right);
an instance's score is its box score times the mean of its keypoint maxima above 0.2.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from densevision.data.images import ImageRecord, records_from_coco, records_from_folder
from densevision.data.jsonio import read_json
from densevision.data.keypoints import (
    KeypointLayout,
    PoseInstance,
    TopDownDataset,
    apply_affine,
    crop_transform,
    load_keypoint_instances,
)
from densevision.errors import DataError, DenseVisionError
from densevision.pose.model import TopDownPose

VISIBLE_THRESHOLD = 0.2


def decode_heatmaps(heatmaps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``B×K×h×w`` -> coordinates ``B×K×2`` (x, y in heatmap pixels) and maxima ``B×K``: the argmax moved
    0.25 px towards the higher neighbour along x and y where both neighbours exist."""
    b, k, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, k, -1)
    maxvals, idx = flat.max(-1)
    px, py = idx % w, torch.div(idx, w, rounding_mode="floor")
    coords = torch.stack([px, py], -1).to(heatmaps.dtype)
    inner = (px > 1) & (px < w - 1) & (py > 1) & (py < h - 1)
    pxc, pyc = px.clamp(1, w - 2), py.clamp(1, h - 2)

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return flat.gather(-1, (y * w + x).unsqueeze(-1)).squeeze(-1)

    diff = torch.stack([at(pyc, pxc + 1) - at(pyc, pxc - 1), at(pyc + 1, pxc) - at(pyc - 1, pxc)], -1)
    coords = coords + torch.where(inner.unsqueeze(-1), torch.sign(diff) * 0.25, torch.zeros_like(diff))
    return coords, maxvals


def flip_test_heatmaps(model: TopDownPose, crops: torch.Tensor, flip_index: Sequence[int]) -> torch.Tensor:
    """The average of the heatmaps of ``crops`` (B×3×H×W) and of their mirror images (flipped back, channels
    swapped by ``flip_index``, shifted one pixel right as the official code does)."""
    heatmaps = model(crops)
    flipped = model(crops.flip(-1)).flip(-1)[:, list(flip_index)]
    flipped[..., 1:] = flipped[..., :-1].clone()
    return (heatmaps + flipped) / 2


def predict_keypoints(
    model: TopDownPose,
    instances: Sequence[PoseInstance],
    layout: KeypointLayout,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    flip_test: bool = True,
) -> list[dict[str, Any]]:
    """COCO keypoint results (``image_id``, ``category_id``, ``keypoints`` [x, y, maxval] × K, ``score``, ``bbox``)
    of ``instances`` (their boxes; keypoints ignored) in their order."""
    if model.num_joints != layout.num_joints:
        raise DenseVisionError(f"the network predicts {model.num_joints} joints, the categories have "
                               f"{layout.num_joints}")
    dataset = TopDownDataset(instances, layout, input_size=model.input_size, heatmap_stride=model.heatmap_stride)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    results: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for crops, _, _, indices in loader:
                crops = crops.to(device)
                heatmaps = flip_test_heatmaps(model, crops, layout.flip_index) if flip_test else model(crops)
                coords, maxvals = decode_heatmaps(heatmaps.float().cpu())
                for j, index in enumerate(indices.tolist()):
                    results.append(_result(dataset, index, coords[j].numpy(), maxvals[j].numpy()))
    finally:
        model.train(was_training)
    return results


def _result(dataset: TopDownDataset, index: int, coords: np.ndarray, maxvals: np.ndarray) -> dict[str, Any]:
    inst = dataset.instances[index]
    cat = dataset.layout.categories[inst.category_id]
    center, size, _, _ = dataset.crop_geometry(index)
    points = apply_affine(coords[cat.channels], crop_transform(center, size, dataset.heatmap_size, inverse=True))
    conf = maxvals[cat.channels]
    shown = conf[conf > VISIBLE_THRESHOLD]
    score = inst.score * (float(shown.mean()) if len(shown) else 0.0)
    keypoints = np.c_[points, conf].ravel()
    return {"image_id": inst.record.image_id, "category_id": cat.id, "bbox": [round(v, 2) for v in inst.box],
            "keypoints": [round(float(v), 3) for v in keypoints], "score": round(score, 5)}


def gt_box_instances(ann: str | os.PathLike, images: str | os.PathLike,
                     layout: KeypointLayout) -> list[PoseInstance]:
    """Every non-crowd ground-truth box of a COCO file whose category the network knows."""
    instances, _ = load_keypoint_instances(ann, images, labelled_only=False)
    known = [i for i in instances if i.category_id in layout.categories]
    if not known:
        raise DataError(f"{ann}: no box of the network's categories "
                        f"({', '.join(c.name for c in layout.categories.values())})")
    return known


def result_box_instances(boxes: str | os.PathLike, images: str | os.PathLike, layout: KeypointLayout, *,
                         ann: str | os.PathLike | None = None, min_score: float = 0.0) -> list[PoseInstance]:
    """The boxes of a COCO results file (``image_id``, ``category_id``, ``bbox``, ``score``) of the network's
    categories with ``score >= min_score``; image ids refer to ``ann``'s images, else to the files of
    ``images`` in sorted order (ids 1..N, as ``densevision detect predict`` numbers a folder)."""
    records: dict[int, ImageRecord] = {r.image_id: r for r in (
        records_from_coco(ann, images)[0] if ann is not None else records_from_folder(images))}
    data = read_json(boxes)
    if not isinstance(data, list):
        raise DataError(f"{boxes}: expected a list of COCO results")
    instances = []
    for i, r in enumerate(data):
        where = f"{boxes}: result {i}"
        if not isinstance(r, dict) or not {"image_id", "category_id", "bbox"} <= set(r):
            raise DataError(f"{where}: needs image_id, category_id and bbox")
        if r["image_id"] not in records:
            raise DataError(f"{where}: image_id {r['image_id']} is not one of the images")
        cat = layout.categories.get(r["category_id"])
        score = float(r.get("score", 1.0))
        if cat is None or score < min_score:
            continue
        zeros = np.zeros((len(cat.keypoints), 3))
        instances.append(PoseInstance(records[r["image_id"]], cat.id, tuple(float(v) for v in r["bbox"]), zeros,
                                      score))
    return instances
