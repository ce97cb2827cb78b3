"""Pictures of predictions: mask / box / caption overlays (torchvision drawing), keypoint skeletons, figure grids."""

from __future__ import annotations

import colorsys
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from torchvision.utils import draw_bounding_boxes, draw_segmentation_masks

from densevision.extras import require
from densevision.io import atomic_open

Color = tuple[int, int, int]


def color_for(key: int) -> Color:
    """A stable, saturated RGB colour per integer key (golden-ratio hue steps, so neighbours differ)."""
    hue = (key * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return round(r * 255), round(g * 255), round(b * 255)


def _as_uint8_chw(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """H×W×3 uint8 array or 3×H×W float [0, 1] / uint8 tensor -> 3×H×W uint8 tensor."""
    is_array = isinstance(image, np.ndarray)
    if image.ndim != 3 or image.shape[-1 if is_array else 0] != 3:
        raise ValueError(f"expected an RGB image (H×W×3 array or 3×H×W tensor), got shape {tuple(image.shape)}")
    t = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1) if is_array else image
    if t.dtype != torch.uint8:
        t = (t.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return t.cpu()


def draw_instances(
    image: np.ndarray | torch.Tensor,
    *,
    boxes: torch.Tensor | None = None,
    masks: torch.Tensor | None = None,
    names: Sequence[str] | None = None,
    scores: Sequence[float] | None = None,
    color_keys: Sequence[int] | None = None,
    alpha: float = 0.45,
    box_width: int = 2,
) -> np.ndarray:
    """Overlay N instances on an image; returns H×W×3 uint8.

    ``boxes`` N×4 XYXY pixels, ``masks`` N×H×W (bool or {0,1}), ``names`` / ``scores`` make the box captions
    (``"star 0.93"``), ``color_keys`` (e.g. category ids) pick the colour of each instance.
    """
    canvas = _as_uint8_chw(image)
    n = len(boxes) if boxes is not None else len(masks) if masks is not None else 0
    if n == 0:
        return canvas.permute(1, 2, 0).numpy().copy()
    keys = list(color_keys) if color_keys is not None else list(range(n))
    colors = [color_for(int(k)) for k in keys]
    if masks is not None:
        masks = torch.as_tensor(masks).bool().cpu()
        canvas = draw_segmentation_masks(canvas, masks, alpha=alpha, colors=colors)
    if boxes is not None:
        captions = None
        if names is not None or scores is not None:
            captions = [
                " ".join(p for p in (names[i] if names is not None else "",
                                     f"{float(scores[i]):.2f}" if scores is not None else "") if p)
                for i in range(n)
            ]
        boxes = torch.as_tensor(boxes).float().cpu()
        canvas = draw_bounding_boxes(canvas, boxes, labels=captions, colors=colors, width=box_width)
    return canvas.permute(1, 2, 0).numpy().copy()


def draw_coco_results(
    image: np.ndarray | torch.Tensor,
    results: Sequence[Mapping[str, Any]],
    category_names: Mapping[int, str] | None = None,
    *,
    score_thr: float = 0.0,
) -> np.ndarray:
    """Overlay one image's COCO results (``bbox`` XYWH, RLE ``segmentation``, ``category_id``, ``score``)."""
    kept = [r for r in results if r.get("score", 1.0) >= score_thr]
    xyxy = [[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in kept)]
    boxes = torch.tensor(xyxy, dtype=torch.float32)
    masks = None
    if kept and all("segmentation" in r for r in kept):
        masks = torch.from_numpy(np.stack([mask_utils.decode(r["segmentation"]) for r in kept]))
    cats = [int(r["category_id"]) for r in kept]
    names = [(category_names or {}).get(c, str(c)) for c in cats]
    scores = [float(r["score"]) for r in kept] if all("score" in r for r in kept) else None
    return draw_instances(image, boxes=boxes.reshape(-1, 4), masks=masks, names=names, scores=scores,
                          color_keys=cats)


def confidence_color(confidence: float) -> Color:
    """Red at confidence 0 through yellow at 0.5 to green at 1 (clipped to [0, 1])."""
    r, g, b = colorsys.hsv_to_rgb(min(max(float(confidence), 0.0), 1.0) / 3, 1.0, 1.0)
    return round(r * 255), round(g * 255), round(b * 255)


def draw_keypoint_results(
    image: np.ndarray | torch.Tensor,
    results: Sequence[Mapping[str, Any]],
    edges: Mapping[int, Sequence[tuple[int, int]]],
    category_names: Mapping[int, str] | None = None,
    *,
    score_thr: float = 0.0,
    kpt_thr: float = 0.2,
) -> np.ndarray:
    """Draw one image's COCO keypoint results (``category_id``, flat ``keypoints`` [x, y, confidence] × K,
    ``score``, optional ``bbox`` XYWH) scoring at least ``score_thr``; returns H×W×3 uint8.

    Each instance: its box and caption in the category's colour (:func:`color_for`), lines in that colour along
    ``edges[category_id]`` (0-based keypoint pairs) between keypoints whose confidences are both ≥ ``kpt_thr``,
    then every keypoint as a dot coloured by its confidence (:func:`confidence_color`: red 0, green 1).
    """
    kept = [r for r in results if r.get("score", 1.0) >= score_thr]
    boxed = [r for r in kept if "bbox" in r]
    names = [(category_names or {}).get(int(r["category_id"]), str(r["category_id"])) for r in boxed]
    xyxy = torch.tensor([[x, y, x + w, y + h] for x, y, w, h in (r["bbox"] for r in boxed)], dtype=torch.float32)
    canvas = Image.fromarray(draw_instances(image, boxes=xyxy.reshape(-1, 4), names=names,
                                            scores=[float(r.get("score", 1.0)) for r in boxed],
                                            color_keys=[int(r["category_id"]) for r in boxed], box_width=1))
    radius = max(2, round(min(canvas.size) / 150))
    draw = ImageDraw.Draw(canvas)
    for r in kept:
        points = np.asarray(r["keypoints"], np.float64).reshape(-1, 3)
        for a, b in edges.get(int(r["category_id"]), ()):
            if min(points[a, 2], points[b, 2]) >= kpt_thr:
                draw.line([tuple(points[a, :2]), tuple(points[b, :2])], fill=color_for(int(r["category_id"])),
                          width=max(1, radius // 2 + 1))
        for x, y, confidence in points:
            draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=confidence_color(confidence),
                         outline=(0, 0, 0))
    return np.asarray(canvas).copy()


def save_png(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an H×W×3 (or H×W) uint8 array as PNG, atomically."""
    with atomic_open(path, "wb") as f:
        Image.fromarray(np.ascontiguousarray(image)).save(f, format="PNG")


def save_figure(
    path: str | os.PathLike,
    panels: Sequence[tuple[str, np.ndarray]],
    *,
    ncols: int | None = None,
    panel_inches: float = 4.0,
    dpi: int = 100,
) -> None:
    """Save titled images in a grid of ``ncols`` columns as one PNG (e.g. coarse vs refined masks)."""
    matplotlib = require("matplotlib", "save_figure")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("save_figure needs at least one panel")
    ncols = ncols or len(panels)
    nrows = -(-len(panels) // ncols)
    size = (panel_inches * ncols, panel_inches * nrows)
    fig, axes = plt.subplots(nrows, ncols, figsize=size, squeeze=False)
    try:
        for ax in axes.flat:
            ax.axis("off")
        for ax, (title, image) in zip(axes.flat, panels, strict=False):
            ax.imshow(image)
            ax.set_title(title)
        fig.tight_layout()
        with atomic_open(path, "wb") as f:
            fig.savefig(f, format="png", dpi=dpi)
    finally:
        plt.close(fig)


def draw_label_map(
    image: np.ndarray | torch.Tensor,
    label: np.ndarray,
    class_names: Sequence[str] = (),
    *,
    alpha: float = 0.5,
    ignore_index: int = 255,
) -> np.ndarray:
    """A semantic label map over its image, with a legend of the classes present.

    ``label`` (H×W class indices) colours each pixel with the palette of the label PNGs (VOC colours; pixels at
    ``ignore_index`` keep the image), blended with weight ``alpha``. The legend to the right lists each class
    present: its colour, index and name (``class_names[index]`` when there is one). Returns
    H'×(W + legend)×3 uint8, H' = max(H, the legend's height); without classes present, the H×W×3 image.
    """
    from PIL import ImageDraw, ImageFont

    from densevision.data.labelmaps import voc_palette

    canvas = _as_uint8_chw(image).permute(1, 2, 0).numpy()
    label = np.asarray(label)
    if label.shape != canvas.shape[:2]:
        raise ValueError(f"label map {label.shape} and image {canvas.shape[:2]} differ in size")
    palette = np.asarray(voc_palette(), dtype=np.float32).reshape(-1, 3)
    shown = label != ignore_index
    blended = canvas.astype(np.float32)
    blended[shown] = (1 - alpha) * blended[shown] + alpha * palette[label[shown] % len(palette)]
    overlay = Image.fromarray(blended.round().astype(np.uint8))
    present = [int(v) for v in np.unique(label[shown])]
    if not present:
        return np.asarray(overlay).copy()
    font = ImageFont.load_default()
    texts = [f"{v} {class_names[v]}" if v < len(class_names) else str(v) for v in present]
    row = max(font.getbbox(t)[3] for t in texts) + 6
    swatch = row - 4
    width = swatch + 12 + max(font.getbbox(t)[2] for t in texts)
    out = Image.new("RGB", (overlay.width + width, max(overlay.height, row * len(present) + 4)), "white")
    out.paste(overlay, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, (value, text) in enumerate(zip(present, texts, strict=True)):
        x, y = overlay.width + 4, 2 + i * row
        colour = tuple(int(c) for c in palette[value % len(palette)])
        draw.rectangle((x, y, x + swatch, y + swatch), fill=colour, outline="black")
        draw.text((x + swatch + 4, y), text, fill="black", font=font)
    return np.asarray(out).copy()
