"""Boundary IoU and Boundary AP (Cheng et al., "Boundary IoU: Improving Object-Centric Image Segmentation
Evaluation", CVPR 2021).

The boundary band of a binary mask is the mask minus its erosion by a 3×3 square applied d times, with the
image edge counted as background (so an object cut by the image border has a contour there);
d = max(1, round(dilation_ratio × image diagonal)). Boundary IoU is the IoU of two bands. Boundary AP is COCO
AP with each (detection, non-crowd ground truth) IoU replaced by min(mask IoU, boundary IoU); crowd regions
keep the plain mask IoU.
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

_KERNEL = np.ones((3, 3), dtype=np.uint8)

BandCache = dict[tuple[int, float], dict[str, Any]]
"""(ground-truth annotation id, dilation ratio) -> boundary band as compressed RLE."""


def boundary_dilation(height: int, width: int, dilation_ratio: float = 0.02) -> int:
    """Band width d in pixels for an image of ``height``×``width``: max(1, round(ratio × diagonal))."""
    return max(1, int(round(dilation_ratio * math.sqrt(height**2 + width**2))))


def _fill_band(mask: np.ndarray, band: np.ndarray, dilation_ratio: float) -> np.ndarray:
    """Write the band of the H×W ``mask`` into the zeroed H×W uint8 ``band`` and return it.

    Only the mask's bounding box is eroded: every pixel outside it is background, so eroding the crop with a
    zero border gives the same band as eroding the whole zero-padded image.
    """
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    if rows.size:
        y0, y1, x0, x1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
        crop = np.ascontiguousarray(mask[y0:y1, x0:x1] != 0, dtype=np.uint8)
        d = boundary_dilation(*mask.shape, dilation_ratio)
        eroded = cv2.erode(crop, _KERNEL, iterations=d, borderType=cv2.BORDER_CONSTANT, borderValue=0)
        band[y0:y1, x0:x1] = crop - eroded
    return band


def mask_to_boundary(mask: np.ndarray, dilation_ratio: float = 0.02) -> np.ndarray:
    """Boundary band of a binary H×W mask (any dtype, non-zero = foreground) as H×W uint8 of 0/1."""
    mask = np.asarray(mask)
    return _fill_band(mask, np.zeros(mask.shape, np.uint8), dilation_ratio)


def boundary_rle(rle: dict[str, Any], dilation_ratio: float = 0.02) -> dict[str, Any]:
    """Boundary band of a compressed-RLE mask, as compressed RLE of the same size."""
    band = np.zeros(rle["size"], np.uint8, order="F")
    return mask_utils.encode(_fill_band(mask_utils.decode(rle), band, dilation_ratio))


def boundary_iou(gt_mask: np.ndarray, dt_mask: np.ndarray, dilation_ratio: float = 0.02) -> float:
    """Boundary IoU of two binary H×W masks (0 when both bands are empty)."""
    gt_band = mask_to_boundary(gt_mask, dilation_ratio).astype(bool)
    dt_band = mask_to_boundary(dt_mask, dilation_ratio).astype(bool)
    union = np.logical_or(gt_band, dt_band).sum()
    return float(np.logical_and(gt_band, dt_band).sum() / union) if union else 0.0


class BoundaryCOCOeval(COCOeval):
    """pycocotools' COCOeval on masks whose IoU is min(mask IoU, boundary IoU) for non-crowd ground truth.

    Matching, accumulation and the 12 summary stats are COCOeval's own. ``gt_band_cache`` maps
    (annotation id, dilation ratio) to the ground-truth band RLE; pass the same dict to reuse bands across
    evaluations of one ground-truth set.
    """

    def __init__(
        self,
        coco_gt: COCO,
        coco_dt: COCO,
        dilation_ratio: float = 0.02,
        gt_band_cache: BandCache | None = None,
    ) -> None:
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.dilation_ratio = dilation_ratio
        self.gt_band_cache = {} if gt_band_cache is None else gt_band_cache

    def _gt_band(self, ann: dict[str, Any]) -> dict[str, Any]:
        key = (ann["id"], self.dilation_ratio)
        if key not in self.gt_band_cache:
            self.gt_band_cache[key] = boundary_rle(ann["segmentation"], self.dilation_ratio)
        return self.gt_band_cache[key]

    def computeIoU(self, imgId: int, catId: int) -> np.ndarray | list:
        """D×G IoU matrix of the image's detections (score order, at most maxDets[-1]) and ground truth."""
        ious = super().computeIoU(imgId, catId)
        if len(ious) == 0:
            return ious
        p = self.params
        cat_ids = [catId] if p.useCats else p.catIds
        gts = [g for c in cat_ids for g in self._gts[imgId, c]]
        dts = [d for c in cat_ids for d in self._dts[imgId, c]]
        order = np.argsort([-d["score"] for d in dts], kind="mergesort")[: p.maxDets[-1]]
        dt_bands = [boundary_rle(dts[i]["segmentation"], self.dilation_ratio) for i in order]
        cols = [j for j, g in enumerate(gts) if not g["iscrowd"]]
        if cols:
            gt_bands = [self._gt_band(gts[j]) for j in cols]
            band_ious = mask_utils.iou(dt_bands, gt_bands, [0] * len(cols))
            ious[:, cols] = np.minimum(ious[:, cols], band_ious)
        return ious
