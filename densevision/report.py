"""The demo report's parts: tables of AP gains over a baseline, and figures (detections next to the ground truth,
boundary close-ups before and after refinement, the detector's learning curve)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from densevision.data.images import read_image
from densevision.data.masks import annotation_to_mask
from densevision.extras import require
from densevision.io import atomic_open
from densevision.viz import draw_coco_results

# Close-up contour styles, drawn in this order: the ground truth last and dashed, so a refined line lying on it
# still shows between the dashes.
CONTOUR_STYLES = {
    "coarse": {"colors": "#e6261f", "linewidths": 1.6, "linestyles": "solid"},
    "refined": {"colors": "#1e78ff", "linewidths": 1.6, "linestyles": "solid"},
    "ground truth": {"colors": "#00e640", "linewidths": 2.2, "linestyles": "dashed"},
}
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


def closeup_window(coarse: np.ndarray, refined: np.ndarray, crop: int) -> tuple[int, int, int]:
    """The ``crop``×``crop`` window (clipped to the H×W masks) holding the most pixels that refinement changed:
    returns its top-left ``(y0, x0)`` and that pixel count. Where the change is, both contours differ visibly."""
    changed = np.pad((coarse != refined).astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    ch, cw = min(crop, coarse.shape[0]), min(crop, coarse.shape[1])
    counts = changed[ch:, cw:] - changed[:-ch, cw:] - changed[ch:, :-cw] + changed[:-ch, :-cw]
    y0, x0 = np.unravel_index(int(np.argmax(counts)), counts.shape)
    return int(y0), int(x0), int(counts[y0, x0])


@dataclass
class Closeup:
    """One close-up: the ``image`` crop (h×w×3 uint8) and the ground-truth, coarse and refined masks over it
    (h×w bool); ``changed`` pixels differ between coarse and refined, ``gain`` more pixels agree with the ground
    truth after refinement (negative: fewer)."""

    image_id: int
    image: np.ndarray
    masks: dict[str, np.ndarray]
    changed: int
    gain: int

    @property
    def title(self) -> str:
        return f"image {self.image_id}: {self.changed} px changed, {self.gain:+d} px correct"


def boundary_closeups(gt: Mapping[str, Any], image_root: str | os.PathLike, coarse: Sequence[Mapping],
                      refined: Sequence[Mapping], *, count: int = 6, crop: int = 80, score_thr: float = 0.3,
                      min_iou: float = 0.5) -> list[Closeup]:
    """Close-ups of true detections (scoring at least ``score_thr``, coarse mask IoU at least ``min_iou`` with a
    ground-truth instance of their category, which the close-up shows) where refinement changed the most pixels
    within one ``crop``-pixel window (:func:`closeup_window`), most changed first; at most ``count``."""
    images = {img["id"]: img for img in gt["images"]}
    anns_by_image: dict[int, list[Mapping]] = {}
    for ann in gt["annotations"]:
        anns_by_image.setdefault(ann["image_id"], []).append(ann)
    candidates = []
    for c, r in zip(coarse, refined, strict=True):
        if c["score"] < score_thr:
            continue
        info = images[c["image_id"]]
        cm = mask_utils.decode(c["segmentation"]).astype(bool)
        rm = mask_utils.decode(r["segmentation"]).astype(bool)
        gts = [annotation_to_mask(a["segmentation"], info["height"], info["width"]).astype(bool)
               for a in anns_by_image.get(c["image_id"], []) if a["category_id"] == c["category_id"]]
        if not gts or not (cm != rm).any():
            continue
        g = max(gts, key=lambda m: _mask_iou(m, cm))
        if _mask_iou(g, cm) < min_iou:
            continue
        y0, x0, changed = closeup_window(cm, rm, crop)
        window = (slice(y0, y0 + crop), slice(x0, x0 + crop))
        gain = int((rm[window] == g[window]).sum()) - int((cm[window] == g[window]).sum())
        masks = {"coarse": cm[window], "refined": rm[window], "ground truth": g[window]}
        candidates.append((changed, gain, info, window, masks))
    candidates.sort(key=lambda t: (-t[0], -t[1]))
    closeups = []
    for changed, gain, info, window, masks in candidates[:count]:
        image = read_image(Path(image_root) / info["file_name"])[window]
        closeups.append(Closeup(image_id=info["id"], image=image, masks=masks, changed=changed, gain=gain))
    return closeups


def draw_closeup(ax: Any, closeup: Closeup) -> None:
    """Show ``closeup`` on a matplotlib axes: the crop with the coarse, refined and (last, dashed) ground-truth
    contours, and a legend of the three below it."""
    from matplotlib.lines import Line2D
    from matplotlib.patheffects import withStroke

    ax.imshow(closeup.image, interpolation="nearest")
    for name, style in CONTOUR_STYLES.items():
        mask = closeup.masks[name]
        if mask.any() and not mask.all():  # a contour exists
            halo = [withStroke(linewidth=style["linewidths"] + 1.5, foreground="black", alpha=0.6)]
            ax.contour(mask.astype(np.float32), levels=[0.5], path_effects=halo, **style)
    handles = [Line2D([], [], color=s["colors"], linewidth=s["linewidths"], linestyle=s["linestyles"], label=name)
               for name, s in CONTOUR_STYLES.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=3, fontsize=7, frameon=False,
              handlelength=2.5)
    ax.set_title(closeup.title, fontsize=8)
    ax.axis("off")


def write_demo_figures(path: str | os.PathLike, gt: Mapping[str, Any], image_root: str | os.PathLike,
                       coarse: Sequence[Mapping], refined: Sequence[Mapping], class_names: Sequence[str], *,
                       samples: int = 2, score_thr: float = 0.3,
                       loss_history: Sequence[Mapping[str, float]] = ()) -> Path:
    """One PNG: for ``samples`` images, ground truth / coarse / refined overlays (detections scoring at least
    ``score_thr``); boundary close-ups (:func:`boundary_closeups`, drawn by :func:`draw_closeup`); and the
    detector's evaluation curve when given."""
    require("matplotlib", "the demo figure")
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
    for closeup in closeups:
        draw_closeup(fig.add_subplot(nrows, ncols, index), closeup)
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
    require("matplotlib", "the semantic figure")
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
