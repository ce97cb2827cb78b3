"""COCO evaluation of a results list against a ground-truth set: bbox and segm AP by pycocotools' COCOeval,
Boundary AP by :class:`BoundaryCOCOeval`, behind one evaluator protocol (reset / process / evaluate).

Metrics are COCOeval's 12 summary stats in percent; a stat COCOeval reports as -1 (no ground truth in that
area range) becomes ``None``. For segm and boundary the result boxes are dropped, so small/medium/large use
the mask area, as detectron2 does (pycocotools' ``loadRes`` would take the box area).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import numbers
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densevision.errors import DataError, DenseVisionError
from densevision.evaluation.boundary import BandCache, BoundaryCOCOeval

IOU_TYPES = ("bbox", "segm", "boundary")
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")

Metrics = dict[str, dict[str, float | None]]


def _quiet() -> contextlib.AbstractContextManager:
    """Silence pycocotools' progress prints."""
    return contextlib.redirect_stdout(io.StringIO())


def _read_json(path: str | os.PathLike) -> Any:
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: no such file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not valid JSON ({exc})") from None


def check_iou_types(iou_types: str | Iterable[str]) -> tuple[str, ...]:
    """The IoU types as a tuple, each one of ``IOU_TYPES``, without repeats (one name may be a plain str)."""
    iou_types = tuple(dict.fromkeys([iou_types] if isinstance(iou_types, str) else iou_types))
    if not iou_types:
        raise DenseVisionError(f"no IoU type given; expected some of {', '.join(IOU_TYPES)}")
    for t in iou_types:
        if t not in IOU_TYPES:
            raise DenseVisionError(f"unknown IoU type {t!r}; expected some of {', '.join(IOU_TYPES)}")
    return iou_types


def _required_keys(iou_types: Sequence[str]) -> list[str]:
    """The geometry keys the IoU types read: 'bbox' and/or 'segmentation'."""
    keys = ["bbox"] if "bbox" in iou_types else []
    if {"segm", "boundary"} & set(iou_types):
        keys.append("segmentation")
    return keys


def _check_gt(dataset: Any, source: str, iou_types: Sequence[str]) -> None:
    """Light structural check of a COCO ground-truth dict: what COCOeval reads, with known ids."""
    if not isinstance(dataset, dict) or not all(
        isinstance(dataset.get(k), list) for k in ("images", "annotations", "categories")
    ):
        raise DataError(f"{source}: expected an object with 'images', 'annotations' and 'categories' lists")
    ann_keys = ["id", "image_id", "category_id", "area", "iscrowd", *_required_keys(iou_types)]
    for what, items, keys in (
        ("image", dataset["images"], ["id", "height", "width"]),
        ("category", dataset["categories"], ["id"]),
        ("annotation", dataset["annotations"], ann_keys),
    ):
        for i, item in enumerate(items):
            missing = [k for k in keys if not isinstance(item, dict) or k not in item]
            if missing:
                raise DataError(f"{source}: {what} {i}: missing key {missing[0]!r}")
    image_ids = {img["id"] for img in dataset["images"]}
    cat_ids = {cat["id"] for cat in dataset["categories"]}
    ann_ids: set[Any] = set()
    for i, ann in enumerate(dataset["annotations"]):
        if ann["id"] in ann_ids:
            raise DataError(f"{source}: annotation {i}: id {ann['id']} is used twice")
        ann_ids.add(ann["id"])
        if ann["image_id"] not in image_ids:
            raise DataError(f"{source}: annotation {i}: image_id {ann['image_id']} is not in 'images'")
        if ann["category_id"] not in cat_ids:
            raise DataError(
                f"{source}: annotation {i}: category_id {ann['category_id']} is not in 'categories'"
            )


def load_coco_gt(gt: str | os.PathLike | dict | COCO, iou_types: Sequence[str] = IOU_TYPES) -> COCO:
    """Ground truth as a pycocotools ``COCO`` from a json path, a COCO dict (copied) or a COCO itself."""
    if isinstance(gt, COCO):
        return gt
    if isinstance(gt, (str, os.PathLike)):
        source, dataset = str(gt), _read_json(gt)
    elif isinstance(gt, dict):
        source, dataset = "ground truth", copy.deepcopy(gt)
    else:
        raise TypeError(f"ground truth must be a path, a dict or a pycocotools COCO, got {type(gt).__name__}")
    _check_gt(dataset, source, iou_types)
    coco = COCO()
    coco.dataset = dataset
    with _quiet():
        coco.createIndex()
    return coco


def _integer(value: Any, where: str, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise DataError(f"{where}: {key!r} must be an integer, got {type(value).__name__}")
    return int(value)


def _real(value: Any, where: str, key: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise DataError(f"{where}: {key!r} must be a finite number, got {value!r:.40}")
    return float(value)


def _bbox(value: Any, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 4:
        raise DataError(f"{where}: 'bbox' must be a list [x, y, w, h], got {value!r:.40}")
    box = [_real(v, where, "bbox") for v in value]
    if box[2] < 0 or box[3] < 0:
        raise DataError(f"{where}: 'bbox' has a negative width or height: {box}")
    return box


def _segmentation(value: Any, where: str, height: int, width: int) -> dict[str, Any]:
    """Compressed RLE of a result mask given as compressed RLE, uncompressed RLE or polygons."""
    if isinstance(value, dict):
        size, counts = value.get("size"), value.get("counts")
        sizes = size if isinstance(size, (list, tuple)) else [None]
        if [_integer(v, where, "size") for v in sizes] != [height, width]:
            raise DataError(
                f"{where}: segmentation size {size!r:.40} does not match the image's [{height}, {width}]"
            )
        if isinstance(counts, (str, bytes)):
            return {"size": [height, width], "counts": counts}
        if isinstance(counts, list):
            if sum(_integer(c, where, "counts") for c in counts) != height * width:
                raise DataError(f"{where}: segmentation 'counts' do not add up to height × width")
            return mask_utils.frPyObjects({"size": [height, width], "counts": counts}, height, width)
        kind = type(counts).__name__
        raise DataError(f"{where}: segmentation 'counts' must be a string or a list, not {kind}")
    if isinstance(value, list):
        for poly in value:
            if not isinstance(poly, list) or len(poly) < 6 or len(poly) % 2:
                raise DataError(f"{where}: a polygon must list 3 or more x, y pairs, got {poly!r:.40}")
            for v in poly:
                _real(v, where, "segmentation")
        if not value:
            return mask_utils.encode(np.zeros((height, width), dtype=np.uint8, order="F"))
        return mask_utils.merge(mask_utils.frPyObjects(value, height, width))
    raise DataError(f"{where}: 'segmentation' must be an RLE object or polygons, not {type(value).__name__}")


def _check_result(result: Any, where: str, coco_gt: COCO, keys: list[str]) -> dict[str, Any]:
    if not isinstance(result, dict):
        raise DataError(f"{where}: expected an object, got {type(result).__name__}")
    missing = [k for k in ["image_id", "category_id", "score", *keys] if k not in result]
    if missing:
        raise DataError(f"{where}: missing key {missing[0]!r}")
    image_id = _integer(result["image_id"], where, "image_id")
    if image_id not in coco_gt.imgs:
        raise DataError(f"{where}: image_id {image_id} is not an image of the ground truth")
    category_id = _integer(result["category_id"], where, "category_id")
    if category_id not in coco_gt.cats:
        raise DataError(f"{where}: category_id {category_id} is not a category of the ground truth")
    out = {"image_id": image_id, "category_id": category_id, "score": _real(result["score"], where, "score")}
    if "bbox" in keys:
        out["bbox"] = _bbox(result["bbox"], where)
    if "segmentation" in keys:
        image = coco_gt.imgs[image_id]
        out["segmentation"] = _segmentation(result["segmentation"], where, image["height"], image["width"])
    return out


def load_results(
    results: str | os.PathLike | Sequence[dict], coco_gt: COCO, iou_types: Sequence[str] = IOU_TYPES
) -> list[dict[str, Any]]:
    """Validated copies of COCO result dicts (a json path or a list), segmentations as compressed RLE.

    Each result needs image_id and category_id of the ground truth, a finite score, and a bbox (for 'bbox')
    or a segmentation (for 'segm' / 'boundary'); anything else raises a one-line DataError naming the file
    and the result's index.
    """
    source = str(results) if isinstance(results, (str, os.PathLike)) else "results"
    if isinstance(results, (str, os.PathLike)):
        results = _read_json(results)
    if not isinstance(results, list):
        raise DataError(f"{source}: expected a list of result objects, got {type(results).__name__}")
    keys = _required_keys(iou_types)
    return [_check_result(r, f"{source}: result {i}", coco_gt, keys) for i, r in enumerate(results)]


def _empty_results(coco_gt: COCO) -> COCO:
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "categories": coco_gt.dataset["categories"]}
    coco_dt.dataset["annotations"] = []
    with _quiet():
        coco_dt.createIndex()
    return coco_dt


def _evaluate_type(
    coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, dilation_ratio: float, band_cache: BandCache
) -> dict[str, float | None]:
    key = "bbox" if iou_type == "bbox" else "segmentation"
    anns = [{"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"], key: r[key]}
            for r in results]
    with _quiet():
        coco_dt = coco_gt.loadRes(anns) if anns else _empty_results(coco_gt)
        if iou_type == "boundary":
            coco_eval = BoundaryCOCOeval(coco_gt, coco_dt, dilation_ratio, band_cache)
        else:
            coco_eval = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats.tolist()
    return {name: 100.0 * v if v >= 0 else None for name, v in zip(METRIC_NAMES, stats, strict=True)}


def _evaluate_coco(
    coco_gt: COCO,
    results: str | os.PathLike | Sequence[dict],
    iou_types: tuple[str, ...],
    dilation_ratio: float,
    band_cache: BandCache,
) -> Metrics:
    if not (math.isfinite(dilation_ratio) and dilation_ratio >= 0):
        raise DenseVisionError(f"dilation ratio must be a finite number >= 0, got {dilation_ratio}")
    checked = load_results(results, coco_gt, iou_types)
    return {t: _evaluate_type(coco_gt, checked, t, dilation_ratio, band_cache) for t in iou_types}


def evaluate(
    gt: str | os.PathLike | dict | COCO,
    results: str | os.PathLike | Sequence[dict],
    iou_types: str | Iterable[str] = IOU_TYPES,
    *,
    dilation_ratio: float = 0.02,
) -> Metrics:
    """COCO metrics of ``results`` against ``gt``: {iou_type: {'AP': ..., 'AP50': ..., ...}} in percent.

    ``gt``: a COCO json path, dict or pycocotools COCO; ``results``: a json path or a list of result dicts.
    ``dilation_ratio`` sets the boundary band width for 'boundary' (0.02 for COCO, 0.005 for Cityscapes).
    """
    iou_types = check_iou_types(iou_types)
    return _evaluate_coco(load_coco_gt(gt, iou_types), results, iou_types, dilation_ratio, {})


class CocoEvaluator:
    """The evaluator protocol: ``reset()``, ``process(predictions)`` per batch, ``evaluate()`` -> metrics.

    Predictions are COCO result dicts. Gathering across ranks is the engine's job: it may pass the gathered
    list to ``evaluate(predictions)``. Ground-truth boundary bands are computed once and kept.
    """

    def __init__(
        self,
        gt: str | os.PathLike | dict | COCO,
        iou_types: str | Iterable[str] = IOU_TYPES,
        *,
        dilation_ratio: float = 0.02,
    ) -> None:
        self.iou_types = check_iou_types(iou_types)
        self.dilation_ratio = dilation_ratio
        self.coco_gt = load_coco_gt(gt, self.iou_types)
        self.predictions: list[dict[str, Any]] = []
        self._band_cache: BandCache = {}

    def reset(self) -> None:
        """Forget the processed predictions."""
        self.predictions = []

    def process(self, predictions: Iterable[dict[str, Any]]) -> None:
        """Add a batch of COCO result dicts."""
        self.predictions.extend(predictions)

    def evaluate(self, predictions: Sequence[dict[str, Any]] | None = None) -> Metrics:
        """Metrics of the processed predictions, or of ``predictions`` (e.g. gathered from all ranks)."""
        predictions = self.predictions if predictions is None else predictions
        return _evaluate_coco(
            self.coco_gt, predictions, self.iou_types, self.dilation_ratio, self._band_cache
        )


def format_table(metrics: Metrics, names: Sequence[str] = METRIC_NAMES[:6]) -> str:
    """A plain-text table: one row per IoU type, one column per metric ('-' where undefined)."""
    lines = [f"{'iou type':<10}" + "".join(f"{n:>8}" for n in names)]
    for iou_type, values in metrics.items():
        cells = ("-" if values[n] is None else f"{values[n]:.2f}" for n in names)
        lines.append(f"{iou_type:<10}" + "".join(f"{c:>8}" for c in cells))
    return "\n".join(lines)
