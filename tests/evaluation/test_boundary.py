"""Boundary band, Boundary IoU and Boundary AP against slow pure-Python formulations written here."""

from __future__ import annotations

import contextlib
import copy
import io

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densevision.evaluation import METRIC_NAMES, BoundaryCOCOeval, boundary_iou, evaluate, mask_to_boundary
from densevision.evaluation.boundary import boundary_dilation

NEIGHBOURS = [(a, b) for a in (-1, 0, 1) for b in (-1, 0, 1)]


def slow_band(mask: np.ndarray, ratio: float) -> set[tuple[int, int]]:
    """Boundary band as a set of (y, x): the foreground minus its d-fold 3×3 erosion, where a pixel survives
    a step only if its 8 neighbours survived too (outside the image counts as background)."""
    h, w = mask.shape
    d = max(1, int(round(ratio * (h * h + w * w) ** 0.5)))
    fg = {(int(y), int(x)) for y, x in zip(*np.nonzero(mask), strict=True)}
    inner = fg
    for _ in range(d):
        inner = {(y, x) for y, x in inner if all((y + a, x + b) in inner for a, b in NEIGHBOURS)}
    return fg - inner


def as_set(band: np.ndarray) -> set[tuple[int, int]]:
    return {(int(y), int(x)) for y, x in zip(*np.nonzero(band), strict=True)}


def special_masks() -> list[np.ndarray]:
    full = np.ones((20, 30), np.uint8)
    empty = np.zeros((20, 30), np.uint8)
    pixel = empty.copy()
    pixel[7, 9] = 1
    corner = empty.copy()
    corner[:12, :15] = 1
    line = empty.copy()
    line[3, 2:28] = 1
    holed = np.zeros((64, 64), np.uint8)
    holed[4:60, 4:60] = 1
    holed[20:40, 25:30] = 0
    checker = (np.indices((9, 13)).sum(0) % 2).astype(np.uint8)
    return [full, empty, pixel, corner, line, holed, checker, np.ones((1, 1), np.uint8)]


@pytest.mark.parametrize("ratio", [0.005, 0.02, 0.1])
def test_band_matches_slow_loop(coco_set, ratio):
    gt, results = coco_set
    sizes = {img["id"]: (img["height"], img["width"]) for img in gt["images"]}
    masks = special_masks()
    for a in gt["annotations"] + results:
        seg = a["segmentation"]
        if isinstance(seg, list):
            seg = mask_utils.merge(mask_utils.frPyObjects(seg, *sizes[a["image_id"]]))
        masks.append(mask_utils.decode(seg))
    assert len(masks) > 30
    for m in masks:
        band = mask_to_boundary(m, ratio)
        assert band.shape == m.shape and band.dtype == np.uint8 and set(np.unique(band)) <= {0, 1}
        assert as_set(band) == slow_band(m, ratio)


def test_band_of_bool_mask_and_image_edge():
    m = np.zeros((10, 10), bool)
    m[:, :5] = True  # cut by three image edges
    band = mask_to_boundary(m, dilation_ratio=0.0)  # d = 1
    assert band[:, 4].all() and band[0, :5].all() and band[-1, :5].all() and band[:, 0].all()
    assert not band[1:-1, 1:4].any() and not band[:, 5:].any()


def test_dilation_width():
    assert boundary_dilation(64, 64, 0.02) == 2  # round(1.81)
    assert boundary_dilation(1, 1, 0.02) == 1  # at least one pixel
    assert boundary_dilation(480, 640, 0.02) == 16
    assert boundary_dilation(1024, 2048, 0.005) == 11


def test_boundary_iou_values():
    a = np.zeros((50, 50), np.uint8)
    a[10:40, 10:40] = 1
    b = np.roll(a, 2, axis=1)
    assert boundary_iou(a, a) == 1.0
    assert boundary_iou(a, np.zeros_like(a)) == 0.0
    assert boundary_iou(np.zeros_like(a), np.zeros_like(a)) == 0.0
    ga, gb = slow_band(a, 0.02), slow_band(b, 0.02)
    assert boundary_iou(a, b) == pytest.approx(len(ga & gb) / len(ga | gb))
    mask_iou = (a & b).sum() / (a | b).sum()
    assert boundary_iou(a, b) < mask_iou  # a 2-px shift costs more on the contour than on the area


class SlowBoundaryEval(COCOeval):
    """COCOeval with every (detection, ground truth) IoU computed pair by pair from decoded masks."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, ratio: float) -> None:
        super().__init__(coco_gt, coco_dt, iouType="segm")
        self.ratio = ratio
        self.bands: dict[tuple[str, int], set] = {}

    def band(self, kind: str, ann: dict, mask: np.ndarray) -> set:
        if (kind, ann["id"]) not in self.bands:
            self.bands[kind, ann["id"]] = slow_band(mask, self.ratio)
        return self.bands[kind, ann["id"]]

    def computeIoU(self, imgId, catId):
        gts = self._gts[imgId, catId]
        dts = sorted(self._dts[imgId, catId], key=lambda d: -d["score"])[: self.params.maxDets[-1]]
        if not gts or not dts:
            return []
        ious = np.zeros((len(dts), len(gts)))
        for i, d in enumerate(dts):
            dm = mask_utils.decode(d["segmentation"]).astype(bool)
            for j, g in enumerate(gts):
                gm = mask_utils.decode(g["segmentation"]).astype(bool)
                inter = int((dm & gm).sum())
                if g["iscrowd"]:
                    ious[i, j] = inter / int(dm.sum())
                    continue
                db, gb = self.band("dt", d, dm), self.band("gt", g, gm)
                band_iou = len(db & gb) / len(db | gb) if db | gb else 0.0
                ious[i, j] = min(inter / int((dm | gm).sum()), band_iou)
        return ious


@pytest.mark.parametrize(("seed", "ratio"), [(0, 0.02), (1, 0.005), (2, 0.05)])
def test_boundary_ap_matches_slow_pairwise(make_coco_set, seed, ratio):
    gt, results = make_coco_set(seed)
    assert any(a["iscrowd"] for a in gt["annotations"])
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([{k: v for k, v in r.items() if k != "bbox"} for r in results])
        slow = SlowBoundaryEval(coco_gt, coco_dt, ratio)
        slow.evaluate()
        slow.accumulate()
        slow.summarize()
    stats = slow.stats.tolist()
    expected = {k: 100.0 * v if v >= 0 else None for k, v in zip(METRIC_NAMES, stats, strict=True)}
    ours = evaluate(gt, results, ["boundary"], dilation_ratio=ratio)["boundary"]
    assert ours == expected
    assert 0 < ours["AP"] < evaluate(gt, results, ["segm"])["segm"]["AP"]


def test_crowd_keeps_mask_iou_and_bands_are_cached():
    h = w = 32
    crowd = np.zeros((h, w), np.uint8)
    crowd[2:30, 2:30] = 1
    obj = np.zeros((h, w), np.uint8)
    obj[5:12, 5:12] = 1
    det = np.zeros((h, w), np.uint8)
    det[4:24, 4:24] = 1  # inside the crowd region: crowd IoU = 1, boundary IoU with it far lower
    rle = lambda m: {**mask_utils.encode(np.asfortranarray(m)), "size": [h, w]}
    gt = COCO()
    gt.dataset = {
        "images": [{"id": 1, "height": h, "width": w}],
        "categories": [{"id": 1}],
        "annotations": [
            {"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 1, "area": float(crowd.sum()),
             "bbox": [2, 2, 28, 28], "segmentation": rle(crowd)},
            {"id": 6, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": float(obj.sum()),
             "bbox": [5, 5, 7, 7], "segmentation": rle(obj)},
        ],
    }
    cache = {}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes([{"image_id": 1, "category_id": 1, "score": 0.9, "segmentation": rle(det)}])
        ev = BoundaryCOCOeval(gt, dt, dilation_ratio=0.02, gt_band_cache=cache)
        ev.evaluate()
    ious = ev.ious[1, 1]
    assert ious[0, 0] == 1.0  # the crowd column keeps the mask IoU
    assert ious[0, 1] == pytest.approx(min((obj & det).sum() / (obj | det).sum(), boundary_iou(obj, det)))
    assert ious[0, 1] < (obj & det).sum() / (obj | det).sum()
    assert list(cache) == [(6, 0.02)]  # only the non-crowd ground truth needs a band
