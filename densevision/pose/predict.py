"""Keypoints from boxes: crops, heatmaps (with the flip test), sub-pixel decoding, COCO keypoint results and
their drawings.

Decoding follows the official HRNet code: the heatmap argmax moved a quarter pixel towards the higher neighbour
(inside the map's border), mapped back through the crop's inverse affine transform; the flip test averages the
heatmaps of the crop and of its mirror (flipped back, left/right channels swapped, shifted one pixel right);
an instance's score is its box score times the mean of its keypoint maxima above 0.2.

DARK (Zhang et al., "Distribution-Aware Coordinate Representation for Human Pose Estimation", CVPR 2020) is the
alternative decoder: the heatmap is smoothed by a Gaussian (rescaled to keep its maximum), and the argmax of its
logarithm is refined by one Newton step, ``x − H⁻¹∇`` from the finite-difference gradient and Hessian. With
networks trained on unbiased targets (peaks at the exact joint), the mirror is shifted by the exact 0.75 px
that the flip moves a stride-4 heatmap in this coordinate convention (heatmap x = input x / 4), not by 1 px.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader
from tqdm import tqdm

from densevision.data.images import ImageRecord, load_image, read_image, records_from_coco, records_from_folder
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
DARK_KERNEL = 11  # Gaussian smoothing before DARK's Taylor step (σ = 2 for 11 taps, as OpenCV derives it)
DECODERS = ("quarter", "dark")


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


def smooth_heatmaps(heatmaps: torch.Tensor, kernel: int = DARK_KERNEL) -> torch.Tensor:
    """``B×K×h×w`` heatmaps blurred by a ``kernel``-tap Gaussian (σ as OpenCV derives it; zeros beyond the
    border), each map rescaled to keep its maximum."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    ax = torch.arange(kernel, dtype=heatmaps.dtype) - (kernel - 1) / 2
    g = torch.exp(-ax**2 / (2 * sigma**2))
    g = g / g.sum()
    b, k, h, w = heatmaps.shape
    maps = heatmaps.reshape(b * k, 1, h, w)
    out = F.conv2d(F.conv2d(maps, g.view(1, 1, 1, -1), padding=(0, kernel // 2)), g.view(1, 1, -1, 1),
                   padding=(kernel // 2, 0))
    peak = maps.amax((-2, -1), keepdim=True)
    return (out * peak / out.amax((-2, -1), keepdim=True).clamp(min=1e-12)).reshape(b, k, h, w)


def decode_dark(heatmaps: torch.Tensor, kernel: int = DARK_KERNEL) -> tuple[torch.Tensor, torch.Tensor]:
    """``B×K×h×w`` -> coordinates ``B×K×2`` (heatmap pixels) and maxima ``B×K`` (of the raw heatmaps): the
    argmax refined by DARK's Taylor step on the log of the smoothed heatmap, where the ±2 px neighbours exist
    and the Hessian is invertible."""
    b, k, h, w = heatmaps.shape
    maxvals, idx = heatmaps.reshape(b, k, -1).max(-1)
    px, py = idx % w, torch.div(idx, w, rounding_mode="floor")
    coords = torch.stack([px, py], -1).to(heatmaps.dtype)
    logs = smooth_heatmaps(heatmaps, kernel).clamp(min=1e-10).log().reshape(b, k, -1)
    inner = (px >= 2) & (px <= w - 3) & (py >= 2) & (py <= h - 3)
    x, y = px.clamp(2, w - 3), py.clamp(2, h - 3)

    def at(dy: int, dx: int) -> torch.Tensor:
        return logs.gather(-1, ((y + dy) * w + x + dx).unsqueeze(-1)).squeeze(-1)

    centre = at(0, 0)
    gx, gy = 0.5 * (at(0, 1) - at(0, -1)), 0.5 * (at(1, 0) - at(-1, 0))
    dxx = 0.25 * (at(0, 2) - 2 * centre + at(0, -2))
    dyy = 0.25 * (at(2, 0) - 2 * centre + at(-2, 0))
    dxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = dxx * dyy - dxy**2
    ok = inner & (det.abs() > 1e-12)
    safe = torch.where(ok, det, torch.ones_like(det))
    offset = -torch.stack([dyy * gx - dxy * gy, dxx * gy - dxy * gx], -1) / safe.unsqueeze(-1)
    return coords + torch.where(ok.unsqueeze(-1), offset, torch.zeros_like(offset)), maxvals


def flip_test_heatmaps(model: TopDownPose, crops: torch.Tensor, flip_index: Sequence[int], *,
                       shift: float = 1.0) -> torch.Tensor:
    """The average of the heatmaps of ``crops`` (B×3×H×W) and of their mirror images (flipped back, channels
    swapped by ``flip_index``, shifted ``shift`` ∈ (0, 1] pixels right by linear interpolation: 1 as the
    official code does, 0.75 for unbiased targets)."""
    heatmaps = model(crops)
    flipped = model(crops.flip(-1)).flip(-1)[:, list(flip_index)]
    flipped[..., 1:] = (1 - shift) * flipped[..., 1:] + shift * flipped[..., :-1]
    return (heatmaps + flipped) / 2


def predict_keypoints(
    model: TopDownPose,
    instances: Sequence[PoseInstance],
    layout: KeypointLayout,
    *,
    batch_size: int = 32,
    device: str | torch.device = "cpu",
    flip_test: bool = True,
    decode: str = "quarter",
    unbiased: bool = False,
    image_loader: Callable[[ImageRecord], np.ndarray] = load_image,
    progress: bool = False,
) -> list[dict[str, Any]]:
    """COCO keypoint results (``image_id``, ``category_id``, ``keypoints`` [x, y, maxval] × K, ``score``, ``bbox``)
    of ``instances`` (their boxes; keypoints ignored) in their order; ``decode`` is "quarter" (the official
    quarter-pixel rule) or "dark"; ``unbiased``: the network was trained on unbiased targets (flip shift 0.75);
    ``image_loader`` reads an instance's record as H×W×3 uint8 RGB (default: its file); ``progress`` shows a bar over
    the batches."""
    if decode not in DECODERS:
        raise DenseVisionError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
    decoder = decode_dark if decode == "dark" else decode_heatmaps
    if model.num_joints != layout.num_joints:
        raise DenseVisionError(f"the network predicts {model.num_joints} joints, the categories have "
                               f"{layout.num_joints}")
    dataset = TopDownDataset(instances, layout, input_size=model.input_size, heatmap_stride=model.heatmap_stride,
                             image_loader=image_loader)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    results: list[dict[str, Any]] = []
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for crops, _, _, indices in tqdm(loader, desc="pose predict", unit="batch", disable=not progress):
                crops = crops.to(device)
                heatmaps = (flip_test_heatmaps(model, crops, layout.flip_index, shift=0.75 if unbiased else 1.0)
                            if flip_test else model(crops))
                coords, maxvals = decoder(heatmaps.float().cpu())
                for j, index in enumerate(indices.tolist()):
                    results.append(keypoint_result(dataset, index, coords[j].numpy(), maxvals[j].numpy()))
    finally:
        model.train(was_training)
    return results


def keypoint_result(dataset: TopDownDataset, index: int, coords: np.ndarray, maxvals: np.ndarray) -> dict[str, Any]:
    """The COCO keypoint result of instance ``index`` from its decoded heatmap coordinates ``coords`` (K×2, heatmap
    pixels of its crop) and maxima ``maxvals`` (K): its category's keypoints mapped back to the image."""
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


def image_records(images: str | os.PathLike, ann: str | os.PathLike | None = None) -> list[ImageRecord]:
    """The images predictions refer to: ``ann``'s images (ids and file names relative to ``images``), else the
    files of ``images`` in sorted order (ids 1..N, as ``densevision detect predict`` numbers a folder)."""
    return records_from_coco(ann, images)[0] if ann is not None else records_from_folder(images)


def box_instances(results: Sequence[Any], records: Sequence[ImageRecord], layout: KeypointLayout, *,
                  min_score: float = 0.0, source: str = "boxes") -> list[PoseInstance]:
    """The boxes of COCO results (``image_id`` of ``records``, ``category_id``, ``bbox`` XYWH, ``score``) of the
    network's categories with ``score >= min_score``, in their order; ``source`` names them in errors."""
    by_id = {r.image_id: r for r in records}
    instances = []
    for i, r in enumerate(results):
        where = f"{source}: result {i}"
        if not isinstance(r, dict) or not {"image_id", "category_id", "bbox"} <= set(r):
            raise DataError(f"{where}: needs image_id, category_id and bbox")
        if r["image_id"] not in by_id:
            raise DataError(f"{where}: image_id {r['image_id']} is not one of the images")
        cat = layout.categories.get(r["category_id"])
        score = float(r.get("score", 1.0))
        if cat is None or score < min_score:
            continue
        zeros = np.zeros((len(cat.keypoints), 3))
        instances.append(PoseInstance(by_id[r["image_id"]], cat.id, tuple(float(v) for v in r["bbox"]), zeros,
                                      score))
    return instances


def result_box_instances(boxes: str | os.PathLike, images: str | os.PathLike, layout: KeypointLayout, *,
                         ann: str | os.PathLike | None = None, min_score: float = 0.0) -> list[PoseInstance]:
    """The boxes of a COCO results file (:func:`box_instances`) on the images of :func:`image_records`."""
    data = read_json(boxes)
    if not isinstance(data, list):
        raise DataError(f"{boxes}: expected a list of COCO results")
    return box_instances(data, image_records(images, ann), layout, min_score=min_score, source=str(boxes))


def write_keypoint_overlays(records: Sequence[ImageRecord], results: Sequence[dict[str, Any]],
                            layout: KeypointLayout, out_dir: str | os.PathLike, *,
                            score_thr: float = 0.0) -> list[Path]:
    """One ``<file stem>.png`` per image in ``out_dir``: its keypoint results scoring at least ``score_thr`` drawn
    as skeletons (each category's ``skeleton``, else consecutive keypoints; dots coloured by confidence) with
    their boxes. Sub-folders of the file name become ``__``; stems shared by several images get ``_<image id>``."""
    from densevision.viz import draw_keypoint_results, save_png

    edges = {c.id: c.edges for c in layout.categories.values()}
    names = {c.id: c.name for c in layout.categories.values()}
    by_image: dict[int, list[dict[str, Any]]] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    stems = [Path(rec.file_name).with_suffix("").as_posix().replace("/", "__") for rec in records]
    shared = {stem for stem, n in Counter(stems).items() if n > 1}
    written = []
    for rec, stem in zip(records, stems, strict=True):
        path = Path(out_dir) / (f"{stem}_{rec.image_id}.png" if stem in shared else f"{stem}.png")
        save_png(path, draw_keypoint_results(read_image(rec.path), by_image.get(rec.image_id, []), edges, names,
                                             score_thr=score_thr))
        written.append(path)
    return written
