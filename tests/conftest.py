"""Shared test setup: no test reaches the network for weights (``DENSEVISION_OFFLINE=1``; the tests of downloads
override it against a local server), and a tiny hand-made COCO data set exercising polygons, both RLE forms, crowd,
category id 0 and empty images."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

os.environ["DENSEVISION_OFFLINE"] = "1"


def square_mask(h: int, w: int, y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[y0:y1, x0:x1] = 1
    return m


def uncompressed_rle(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": [int(c) for c in counts]}


@pytest.fixture
def tiny_coco(tmp_path: Path) -> tuple[Path, Path, dict]:
    """Three 40×60 images: one polygon (category 0), one compressed + one uncompressed RLE (category 7,
    one of them crowd), and an image without annotations."""
    root = tmp_path / "images"
    root.mkdir()
    h, w = 40, 60
    for k in range(3):
        Image.fromarray(np.full((h, w, 3), 40 * (k + 1), np.uint8)).save(root / f"im{k}.png")
    m_rle = square_mask(h, w, 5, 30, 25, 50)
    rle = mask_utils.encode(np.asfortranarray(m_rle))
    m_unc = square_mask(h, w, 20, 2, 38, 12)
    data = {
        "images": [{"id": 10 + k, "file_name": f"im{k}.png", "height": h, "width": w} for k in range(3)],
        "categories": [{"id": 7, "name": "seven"}, {"id": 0, "name": "zero"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 0, "iscrowd": 0, "area": 100.0,
             "bbox": [10.0, 10.0, 10.0, 10.0], "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]]},
            {"id": 2, "image_id": 11, "category_id": 7, "iscrowd": 0, "area": 400.0,
             "bbox": [30.0, 5.0, 20.0, 20.0],
             "segmentation": {"size": [h, w], "counts": rle["counts"].decode("ascii")}},
            {"id": 3, "image_id": 11, "category_id": 7, "iscrowd": 1, "area": 180.0,
             "bbox": [2.0, 20.0, 10.0, 18.0], "segmentation": uncompressed_rle(m_unc)},
        ],
    }
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps(data))
    return ann, root, data
