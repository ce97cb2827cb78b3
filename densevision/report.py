"""The demo report's parts: tables of AP gains over a baseline, and figures (detections next to the ground truth,
boundary close-ups before and after refinement, the detector's learning curve)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils

from densevision.data.images import read_image
from densevision.data.masks import annotation_to_mask
from densevision.io import atomic_open
from densevision.viz import draw_coco_results

GT_COLOUR, COARSE_COLOUR, REFINED_COLOUR = (0, 200, 0), (230, 30, 30), (30, 120, 255)
IOU_TYPE_NAMES = {"bbox": "bbox", "segm": "segm", "boundary": "Boundary"}


def gain_table(rows: Mapping[str, Mapping[str, Mapping[str, float | None]]], iou_types: Sequence[str],
               names: Sequence[str], base: str = "coarse") -> str:
    """A markdown table of metrics, one row per entry of ``rows`` (``{row: {iou_type: {name: AP or None}}}``),
    one column per (IoU type, metric name); every row but ``base`` shows its difference to ``base`` in
    parentheses, and an undefined value (no ground truth in that area range) shows ``-``."""
    header = [f"{IOU_TYPE_NAMES.get(t, t)} {n}" for t in iou_types for n in names]
    lines = ["| | " + " | ".join(header) + " |", "|---|" + "---:|" * len(header)]
    for row, metrics in rows.items():
        cells = []
        for t in iou_types:
            for n in names:
                value, ref = metrics[t][n], rows[base][t][n]
                if value is None:
                    cells.append("-")
                elif row == base or ref is None:
                    cells.append(f"{value:.2f}")
                else:
                    cells.append(f"{value:.2f} ({value - ref:+.2f})")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _mask_iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 0.0


def _contours(canvas: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], scale: int) -> None:
    big = cv2.resize(mask.astype(np.uint8), None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    contours, _ = cv2.findContours(big, cv2.RETR_LIST, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(canvas, contours, -1, colour, 1)


def boundary_closeups(gt: Mapping[str, Any], image_root: str | os.PathLike, coarse: Sequence[Mapping],
                      refined: Sequence[Mapping], *, count: int = 6, zoom: int = 3, crop: int = 80,
                      score_thr: float = 0.3) -> list[tuple[str, np.ndarray]]:
    """Close-ups (``zoom``× enlarged ``crop``-pixel windows centred on the coarse boundary where refinement
    changed it) of the detections whose pixels improved most, with the ground truth (green), coarse (red) and
    refined (blue) contours; returns ``(title, H×W×3 uint8)`` panels."""
    images = {img["id"]: img for img in gt["images"]}
    anns_by_image: dict[int, list[Mapping]] = {}
    for ann in gt["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    candidates = []
    for k, (c, r) in enumerate(zip(coarse, refined, strict=True)):
        if c["score"] < score_thr:
            continue
        info = images[c["image_id"]]
        cm = mask_utils.decode(c["segmentation"]).astype(bool)
        rm = mask_utils.decode(r["segmentation"]).astype(bool)
        changed = cm ^ rm
        if not changed.any():
            continue
        gts = [annotation_to_mask(a["segmentation"], info["height"], info["width"]).astype(bool)
               for a in anns_by_image.get(c["image_id"], []) if a["category_id"] == c["category_id"]]
        if not gts:
            continue
        g = max(gts, key=lambda m: _mask_iou(m, cm))
        gain = int((rm == g).sum()) - int((cm == g).sum())
        edge = cm & ~cv2.erode(cm.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
        ys, xs = np.nonzero(changed & cv2.dilate(edge.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool))
        if len(ys) == 0:
            continue
        candidates.append((gain, k, int(np.median(ys)), int(np.median(xs)), g, cm, rm))
    candidates.sort(key=lambda t: -t[0])
    panels = []
    for gain, k, cy, cx, g, cm, rm in candidates[:count]:
        info = images[coarse[k]["image_id"]]
        image = read_image(Path(image_root) / info["file_name"])
        h, w = g.shape
        y0 = int(np.clip(cy - crop // 2, 0, max(h - crop, 0)))
        x0 = int(np.clip(cx - crop // 2, 0, max(w - crop, 0)))
        window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        canvas = cv2.resize(image[window], None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
        for mask, colour in ((g, GT_COLOUR), (cm, COARSE_COLOUR), (rm, REFINED_COLOUR)):
            _contours(canvas, mask[window], colour, zoom)
        panels.append((f"image {info['id']}: {gain:+d} px correct", canvas))
    return panels


def write_demo_figures(path: str | os.PathLike, gt: Mapping[str, Any], image_root: str | os.PathLike,
                       coarse: Sequence[Mapping], refined: Sequence[Mapping], class_names: Sequence[str], *,
                       samples: int = 2, score_thr: float = 0.3,
                       loss_history: Sequence[Mapping[str, float]] = ()) -> Path:
    """One PNG: for ``samples`` images, ground truth / coarse / refined overlays (detections scoring at least
    ``score_thr``); boundary close-ups (green ground truth, red coarse, blue refined); and the detector's
    evaluation curve when given."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = {c["id"]: c["name"] for c in gt["categories"]}
    by_image: dict[int, dict[str, list]] = {}
    for key, rows in (("gt", gt["annotations"]), ("coarse", coarse), ("refined", refined)):
        for r in rows:
            by_image.setdefault(r["image_id"], {"gt": [], "coarse": [], "refined": []})[key].append(r)
    rows_panels = []
    for info in gt["images"][:samples]:
        image = read_image(Path(image_root) / info["file_name"])
        entry = by_image.get(info["id"], {"gt": [], "coarse": [], "refined": []})
        gt_rows = [{**a, "score": 1.0, "segmentation": _rle(a, info)} for a in entry["gt"]]
        rows_panels.append([
            (f"image {info['id']}: ground truth", draw_coco_results(image, gt_rows, names)),
            ("coarse (detector)", draw_coco_results(image, entry["coarse"], names, score_thr=score_thr)),
            ("refined (BPR)", draw_coco_results(image, entry["refined"], names, score_thr=score_thr)),
        ])
    closeups = boundary_closeups(gt, image_root, coarse, refined, score_thr=score_thr)
    curve = [e for e in loss_history if "segm/AP" in e]
    ncols = 3
    nrows = len(rows_panels) + -(-len(closeups) // ncols) + (1 if curve else 0)
    fig = Figure(figsize=(4.2 * ncols, 4.2 * max(nrows, 1)), dpi=90)
    FigureCanvasAgg(fig)
    index = 1
    for row in rows_panels:
        for title, image in row:
            ax = fig.add_subplot(nrows, ncols, index)
            ax.imshow(image)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
            index += 1
    for title, image in closeups:
        ax = fig.add_subplot(nrows, ncols, index)
        ax.imshow(image)
        ax.set_title(title + " (green GT, red coarse, blue refined)", fontsize=7)
        ax.axis("off")
        index += 1
    if curve:
        ax = fig.add_subplot(nrows, 1, nrows)
        for key in ("bbox/AP", "segm/AP", "boundary/AP"):
            points = [(e["iteration"], e[key]) for e in curve if key in e]
            if points:
                ax.plot(*zip(*points, strict=True), marker="o", label=key)
        ax.set(xlabel="iteration", ylabel="AP (validation)", title="detector learning curve")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path


def _rle(ann: Mapping[str, Any], info: Mapping[str, Any]) -> dict:
    mask = annotation_to_mask(ann["segmentation"], info["height"], info["width"])
    return mask_utils.encode(np.asfortranarray(mask))


def write_semantic_figure(path: str | os.PathLike, samples: Sequence[tuple[Path, Path, Path]]) -> Path:
    """One PNG with a row per ``(image, ground-truth label map, predicted label map)`` file triple: the image,
    then both label maps in the label files' palette colours (VOC; 255 = ignore)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from PIL import Image

    fig = Figure(figsize=(9, 3 * len(samples)), dpi=80)
    FigureCanvasAgg(fig)
    for row, files in enumerate(samples):
        for col, (title, file) in enumerate(zip(("image", "ground truth", "prediction"), files, strict=True)):
            ax = fig.add_subplot(len(samples), 3, 3 * row + col + 1)
            ax.imshow(np.asarray(Image.open(file).convert("RGB")))
            ax.set_title(f"{title}: {Path(file).name}", fontsize=9)
            ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    return path
