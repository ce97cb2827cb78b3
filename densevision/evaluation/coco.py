"""COCO evaluation of a results list against a ground-truth set: bbox and segm AP by pycocotools' COCOeval,
Boundary AP by :class:`BoundaryCOCOeval`, keypoint (OKS) AP by :class:`KeypointCOCOeval` with per-category
sigmas, behind one evaluator protocol (reset / process / evaluate).

Metrics are COCOeval's 12 summary stats in percent; a stat COCOeval reports as -1 (no ground truth in that
area range) becomes ``None``. For segm and boundary the result boxes are dropped, so small/medium/large use
the mask area, as detectron2 does (pycocotools' ``loadRes`` would take the box area). Per-category AP, AP50 and
AP75 come from COCOeval's accumulated precision array, as detectron2 derives them.
"""

from __future__ import annotations

import contextlib
import copy
import io
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densevision.data.coco import check_coco, coco_from_dict
from densevision.data.jsonio import read_json
from densevision.data.keypoints import category_sigmas
from densevision.data.results import load_results
from densevision.errors import DataError, DenseVisionError
from densevision.evaluation.boundary import BandCache, BoundaryCOCOeval

IOU_TYPES = ("bbox", "segm", "boundary")  # instance segmentation
ALL_IOU_TYPES = (*IOU_TYPES, "keypoints")
METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
KEYPOINT_METRIC_NAMES = ("AP", "AP50", "AP75", "APm", "APl", "AR", "AR50", "AR75", "ARm", "ARl")
PER_CLASS_NAMES = ("AP", "AP50", "AP75")

Metrics = dict[str, dict[str, float | None]]
PerClass = dict[str, list[dict[str, Any]]]
"""``{iou_type: [{"id", "name", "AP", "AP50", "AP75"}, ...]}``, one row per evaluated category, in percent."""


def _quiet() -> contextlib.AbstractContextManager:
    """Silence pycocotools' progress prints."""
    return contextlib.redirect_stdout(io.StringIO())


def check_iou_types(iou_types: str | Iterable[str]) -> tuple[str, ...]:
    """The IoU types as a tuple, each one of ``IOU_TYPES``, without repeats (one name may be a plain str)."""
    iou_types = tuple(dict.fromkeys([iou_types] if isinstance(iou_types, str) else iou_types))
    if not iou_types:
        raise DenseVisionError(f"no IoU type given; expected some of {', '.join(ALL_IOU_TYPES)}")
    for t in iou_types:
        if t not in ALL_IOU_TYPES:
            raise DenseVisionError(f"unknown IoU type {t!r}; expected some of {', '.join(ALL_IOU_TYPES)}")
    return iou_types


def _key(iou_type: str) -> str:
    """The result key an IoU type reads."""
    return {"bbox": "bbox", "keypoints": "keypoints"}.get(iou_type, "segmentation")


def _required_keys(iou_types: Sequence[str]) -> list[str]:
    """The geometry keys the IoU types read: 'bbox', 'segmentation', 'keypoints'."""
    return list(dict.fromkeys(_key(t) for t in iou_types))


def results_iou_types(results: Sequence[Any]) -> tuple[str, ...]:
    """The IoU types a results list calls for: ``keypoints`` when a result has keypoints, else ``bbox`` (when a
    result has a box) and ``segm``, ``boundary`` (when one has a segmentation); ``bbox`` for an empty list."""
    keys = {k for r in results if isinstance(r, Mapping) for k in ("bbox", "segmentation", "keypoints") if k in r}
    if "keypoints" in keys:
        return ("keypoints",)
    types = tuple(t for t in IOU_TYPES if _key(t) in keys)
    return types or ("bbox",)


def check_results_give(results: Sequence[Any], iou_types: Sequence[str], source: str = "results") -> None:
    """Refuse an IoU type whose geometry no result of a non-empty list has (e.g. segm of boxes only)."""
    if not results:
        return
    keys = {k for r in results if isinstance(r, Mapping) for k in r}
    given = [k for k in ("bbox", "segmentation", "keypoints") if k in keys]
    for t in iou_types:
        if _key(t) not in keys:
            hint = (f"they give {', '.join(given)}: evaluate them as {' '.join(results_iou_types(results))}"
                    if given else "they have no geometry")
            raise DenseVisionError(f"{source}: {t} AP needs {_key(t)!r} and no result has one ({hint})")


KptSigmas = Mapping[int, Sequence[float]]


class KeypointCOCOeval(COCOeval):
    """pycocotools' keypoint evaluation (``iouType="keypoints"``) with the OKS sigmas of each category
    (``sigmas``: ``{category_id: [σ_1..σ_K]}``) instead of one global array."""

    def __init__(self, coco_gt: COCO, coco_dt: COCO, sigmas: KptSigmas) -> None:
        super().__init__(coco_gt, coco_dt, iouType="keypoints")
        self.category_sigmas = {int(c): np.asarray(s, dtype=np.float64) for c, s in sigmas.items()}

    def computeOks(self, imgId: int, catId: int):  # noqa: N802 (pycocotools' name)
        self.params.kpt_oks_sigmas = self.category_sigmas[catId]
        return super().computeOks(imgId, catId)


def resolve_kpt_sigmas(coco_gt: COCO, kpt_sigmas: Sequence[float] | None = None) -> dict[int, list[float]]:
    """OKS sigmas of every category with ``keypoints`` names: its ``kpt_sigmas`` entry, COCO's 17 person sigmas
    for COCO's person keypoints, else ``kpt_sigmas`` (one value per keypoint); a category left without sigmas
    is an error."""
    out = {}
    for cat_id, cat in coco_gt.cats.items():
        names = cat.get("keypoints") or []
        if not names:
            continue
        sigmas = category_sigmas(cat)
        if sigmas is None and kpt_sigmas is not None:
            sigmas = [float(v) for v in kpt_sigmas]
        if sigmas is None:
            raise DenseVisionError(f"category {cat_id} ({cat.get('name')}) has keypoints but no OKS sigmas: add "
                                   "'kpt_sigmas' to its entry or pass --kpt-sigmas")
        if len(sigmas) != len(names) or not all(math.isfinite(v) and v > 0 for v in sigmas):
            raise DenseVisionError(f"category {cat_id} ({cat.get('name')}): {len(names)} keypoints need as many "
                                   f"positive OKS sigmas, got {sigmas}")
        out[cat_id] = sigmas
    if not out:
        raise DenseVisionError("keypoint evaluation: no ground-truth category has 'keypoints' names")
    return out


def _check_keypoint_counts(results: Sequence[dict[str, Any]], sigmas: KptSigmas) -> None:
    for i, r in enumerate(results):
        cat = r["category_id"]
        if cat not in sigmas:
            raise DenseVisionError(f"results: result {i}: category {cat} has no keypoints in the ground truth")
        if len(r["keypoints"]) != 3 * len(sigmas[cat]):
            raise DenseVisionError(f"results: result {i}: {len(r['keypoints'])} keypoint values, category {cat} "
                                   f"needs 3 x {len(sigmas[cat])}")


def load_coco_gt(gt: str | os.PathLike | dict | COCO, iou_types: Sequence[str] = IOU_TYPES) -> COCO:
    """Ground truth as a pycocotools ``COCO`` from a json path, a COCO dict (copied) or a COCO itself, after the
    full validation of :func:`densevision.data.coco.validate_coco` (plus the ``area`` and ``iscrowd`` COCOeval
    reads); paths and dicts are validated before pycocotools sees them."""
    required = ("area", "iscrowd", *_required_keys(iou_types))
    if isinstance(gt, COCO):
        check_coco(gt.dataset, "ground truth", required=required)
        return gt
    if isinstance(gt, (str, os.PathLike)):
        source, dataset = str(gt), read_json(gt)
    elif isinstance(gt, dict):
        source, dataset = "ground truth", copy.deepcopy(gt)
    else:
        raise TypeError(f"ground truth must be a path, a dict or a pycocotools COCO, got {type(gt).__name__}")
    check_coco(dataset, source, required=required)
    return coco_from_dict(dataset)


def _empty_results(coco_gt: COCO) -> COCO:
    coco_dt = COCO()
    coco_dt.dataset = {"images": list(coco_gt.dataset["images"]), "categories": coco_gt.dataset["categories"]}
    coco_dt.dataset["annotations"] = []
    with _quiet():
        coco_dt.createIndex()
    return coco_dt


def per_class_ap(coco_eval: COCOeval) -> list[dict[str, Any]]:
    """Per category of an accumulated ``coco_eval``: ``id``, ``name`` and AP, AP50, AP75 in percent over all
    areas at the largest max-detections setting (``None`` for a category without ground truth)."""
    precision = coco_eval.eval["precision"][..., 0, -1]  # T×R×K: IoU thresholds, recall points, categories
    thresholds = coco_eval.params.iouThrs
    rows = []
    for k, cat_id in enumerate(coco_eval.params.catIds):
        row: dict[str, Any] = {"id": int(cat_id), "name": str(coco_eval.cocoGt.cats[cat_id].get("name", cat_id))}
        for name, values in (("AP", precision[:, :, k]),
                             ("AP50", precision[np.isclose(thresholds, 0.5), :, k]),
                             ("AP75", precision[np.isclose(thresholds, 0.75), :, k])):
            valid = values[values > -1]
            row[name] = 100.0 * float(valid.mean()) if valid.size else None
        rows.append(row)
    return rows


def _evaluate_type(
    coco_gt: COCO, results: list[dict[str, Any]], iou_type: str, dilation_ratio: float, band_cache: BandCache,
    kpt_sigmas: KptSigmas | None = None,
) -> COCOeval:
    """An evaluated, accumulated and summarised COCOeval of one IoU type."""
    key = _key(iou_type)
    anns = [{"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"], key: r[key]}
            for r in results]
    with _quiet():
        coco_dt = coco_gt.loadRes(anns) if anns else _empty_results(coco_gt)
        if iou_type == "boundary":
            coco_eval = BoundaryCOCOeval(coco_gt, coco_dt, dilation_ratio, band_cache)
        elif iou_type == "keypoints":
            coco_eval = KeypointCOCOeval(coco_gt, coco_dt, kpt_sigmas)
            coco_eval.params.catIds = sorted(kpt_sigmas)
        else:
            coco_eval = COCOeval(coco_gt, coco_dt, iouType=iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return coco_eval


def _summary(coco_eval: COCOeval, iou_type: str) -> dict[str, float | None]:
    names = KEYPOINT_METRIC_NAMES if iou_type == "keypoints" else METRIC_NAMES
    return {name: 100.0 * v if v >= 0 else None for name, v in zip(names, coco_eval.stats.tolist(), strict=True)}


def _evaluate_coco(
    coco_gt: COCO,
    results: Any,
    iou_types: tuple[str, ...],
    dilation_ratio: float,
    band_cache: BandCache,
    kpt_sigmas: Sequence[float] | None = None,
    per_class: PerClass | None = None,
    source: str | None = None,
) -> Metrics:
    if not (math.isfinite(dilation_ratio) and dilation_ratio >= 0):
        raise DenseVisionError(f"dilation ratio must be a finite number >= 0, got {dilation_ratio}")
    sigmas = resolve_kpt_sigmas(coco_gt, kpt_sigmas) if "keypoints" in iou_types else None
    checked = load_results(results, coco_gt.imgs, coco_gt.cats, _required_keys(iou_types), source=source)
    if sigmas is not None:
        _check_keypoint_counts(checked, sigmas)
    metrics = {}
    for t in iou_types:
        coco_eval = _evaluate_type(coco_gt, checked, t, dilation_ratio, band_cache, sigmas)
        metrics[t] = _summary(coco_eval, t)
        if per_class is not None:
            per_class[t] = per_class_ap(coco_eval)
    return metrics


def evaluate(
    gt: str | os.PathLike | dict | COCO,
    results: str | os.PathLike | Sequence[dict],
    iou_types: str | Iterable[str] | None = None,
    *,
    dilation_ratio: float = 0.02,
    kpt_sigmas: Sequence[float] | None = None,
    per_class: PerClass | None = None,
) -> Metrics:
    """COCO metrics of ``results`` against ``gt``: {iou_type: {'AP': ..., 'AP50': ..., ...}} in percent.

    ``gt``: a COCO json path, dict or pycocotools COCO; ``results``: a json path or a list of result dicts.
    ``iou_types``: None evaluates what the results call for (:func:`results_iou_types`); a type whose geometry
    no result has is refused (:func:`check_results_give`).
    ``dilation_ratio`` sets the boundary band width for 'boundary' (0.02 for COCO, 0.005 for Cityscapes).
    ``kpt_sigmas``: OKS sigmas for keypoint categories without their own (see :func:`resolve_kpt_sigmas`).
    ``per_class``: if given, receives each IoU type's per-category AP, AP50 and AP75 (:data:`PerClass`).
    """
    source = str(results) if isinstance(results, (str, os.PathLike)) else "results"
    if isinstance(results, (str, os.PathLike)):
        results = read_json(results)
    if not isinstance(results, list):
        raise DataError(f"{source}: expected a list of result objects, got {type(results).__name__}")
    iou_types = results_iou_types(results) if iou_types is None else check_iou_types(iou_types)
    check_results_give(results, iou_types, source)
    return _evaluate_coco(load_coco_gt(gt, iou_types), results, iou_types, dilation_ratio, {}, kpt_sigmas,
                          per_class, source)


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
        kpt_sigmas: Sequence[float] | None = None,
    ) -> None:
        self.iou_types = check_iou_types(iou_types)
        self.dilation_ratio = dilation_ratio
        self.kpt_sigmas = kpt_sigmas
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
            self.coco_gt, predictions, self.iou_types, self.dilation_ratio, self._band_cache, self.kpt_sigmas
        )


def format_per_class(per_class: PerClass) -> str:
    """Plain-text tables of per-category AP, AP50, AP75: one block per IoU type ('-' where undefined)."""
    blocks = []
    for iou_type, rows in per_class.items():
        width = max([len(iou_type) + 6, *(len(r["name"]) + 2 for r in rows)])
        lines = [f"{iou_type + ' class':<{width}}" + "".join(f"{n:>8}" for n in PER_CLASS_NAMES)]
        for row in rows:
            cells = ("-" if row[n] is None else f"{row[n]:.2f}" for n in PER_CLASS_NAMES)
            lines.append(f"{row['name']:<{width}}" + "".join(f"{c:>8}" for c in cells))
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def format_table(metrics: Metrics, names: Sequence[str] = METRIC_NAMES[:6]) -> str:
    """A plain-text table: one row per IoU type, one column per metric ('-' where undefined)."""
    lines = [f"{'iou type':<10}" + "".join(f"{n:>8}" for n in names)]
    for iou_type, values in metrics.items():
        cells = ("-" if values.get(n) is None else f"{values[n]:.2f}" for n in names)
        lines.append(f"{iou_type:<10}" + "".join(f"{c:>8}" for c in cells))
    return "\n".join(lines)
