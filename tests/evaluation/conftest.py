"""A small random COCO set (ellipses, boxes, convex polygons; polygon and RLE ground truth, crowd regions)
with perturbed results: shifted, grown or shrunk masks, relabelled and false-positive detections."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils


def random_shape(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """An H×W uint8 mask with one ellipse, box or convex polygon, possibly cut by the image border."""
    m = np.zeros((h, w), np.uint8)
    cx, cy = int(rng.integers(-4, w + 4)), int(rng.integers(-4, h + 4))
    s = int(rng.integers(2, max(3, min(h, w) // 2)))
    kind = rng.integers(3)
    if kind == 0:
        axes = (s, int(rng.integers(1, s + 1)))
        cv2.ellipse(m, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
    elif kind == 1:
        cv2.rectangle(m, (cx - s, cy - s // 2), (cx + s, cy + s // 2), 1, -1)
    else:
        pts = np.stack([cx + rng.integers(-s, s + 1, 6), cy + rng.integers(-s, s + 1, 6)], 1).astype(np.int32)
        cv2.fillPoly(m, [cv2.convexHull(pts)], 1)
    return m


def perturb(rng: np.random.Generator, m: np.ndarray) -> np.ndarray:
    """Shift by up to 2 px, then maybe grow or shrink by a pixel or two."""
    h, w = m.shape
    dx, dy = rng.integers(-2, 3, 2) * (rng.random() < 0.6)
    out = cv2.warpAffine(m, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), flags=cv2.INTER_NEAREST)
    r = rng.random()
    if r < 0.3:
        out = cv2.dilate(out, np.ones((3, 3), np.uint8), iterations=int(rng.integers(1, 3)))
    elif r < 0.6:
        out = cv2.erode(out, np.ones((3, 3), np.uint8))
    return out


def encode(m: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(m))
    return {"size": list(m.shape), "counts": rle["counts"].decode("ascii")}


def as_result(image_id: int, category_id: int, score: float, m: np.ndarray) -> dict:
    rle = encode(m)
    bbox = mask_utils.toBbox(rle).tolist()
    return dict(image_id=image_id, category_id=category_id, score=score, segmentation=rle, bbox=bbox)


def polygons(m: np.ndarray) -> list[list[float]]:
    contours, _ = cv2.findContours(m, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [c.flatten().astype(float).tolist() for c in contours if len(c) >= 3]


def _make_coco_set(seed: int, n_images: int = 4, n_cats: int = 3, size: tuple[int, int] = (40, 120)):
    """(gt dict, results list): images of random size with 2–5 objects (the first one a crowd region in every
    other image); each object gets 1–2 perturbed detections, each image one random false positive."""
    rng = np.random.default_rng(seed)
    images, anns, results = [], [], []
    for i in range(1, n_images + 1):
        h, w = (int(v) for v in rng.integers(*size, 2))
        images.append({"id": i, "height": h, "width": w, "file_name": f"{i}.png"})
        for k in range(int(rng.integers(2, 6))):
            m = random_shape(rng, h, w)
            poly = polygons(m)
            if not poly:
                continue
            crowd = int(k == 0 and i % 2 == 0)
            cat = int(rng.integers(1, n_cats + 1))
            seg = poly if rng.random() < 0.5 and not crowd else encode(m)
            rle = mask_utils.merge(mask_utils.frPyObjects(seg, h, w)) if isinstance(seg, list) else seg
            anns.append({"id": len(anns) + 1, "image_id": i, "category_id": cat, "segmentation": seg,
                         "area": float(mask_utils.area(rle)), "bbox": mask_utils.toBbox(rle).tolist(),
                         "iscrowd": crowd})
            for _ in range(int(rng.integers(1, 3))):
                pm = perturb(rng, mask_utils.decode(rle))
                if pm.any():
                    label = cat if rng.random() < 0.9 else int(rng.integers(1, n_cats + 1))
                    results.append(as_result(i, label, round(float(rng.random()), 3), pm))
        fp = random_shape(rng, h, w)
        if fp.any():
            results.append(as_result(i, int(rng.integers(1, n_cats + 1)), 0.5, fp))
    categories = [{"id": c, "name": f"class{c}"} for c in range(1, n_cats + 1)]
    return {"images": images, "annotations": anns, "categories": categories}, results


def _gt_as_results(gt: dict) -> list[dict]:
    """The non-crowd ground truth as results with score 1 (polygons converted to RLE)."""
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    out = []
    for a in gt["annotations"]:
        if a["iscrowd"]:
            continue
        seg = a["segmentation"]
        if isinstance(seg, list) or isinstance(seg["counts"], list):
            rle = mask_utils.frPyObjects(seg, *sizes[a["image_id"]])
            rle = mask_utils.merge(rle) if isinstance(rle, list) else rle
            seg = {"size": rle["size"], "counts": rle["counts"].decode("ascii")}
        out.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                    "bbox": a["bbox"], "segmentation": seg})
    return out


@pytest.fixture
def make_coco_set():
    """The factory ``make_coco_set(seed, n_images=4, n_cats=3, size=(40, 120)) -> (gt, results)``."""
    return _make_coco_set


@pytest.fixture
def coco_set() -> tuple[dict, list[dict]]:
    return _make_coco_set(0)


@pytest.fixture
def gt_as_results():
    """``gt_as_results(gt) -> results``: the non-crowd ground truth as score-1 results."""
    return _gt_as_results
