"""COCO results files (``[{image_id, category_id, score, bbox, segmentation}, ...]``): reading with full
validation, and atomic writing.

Results are checked against the images they refer to before pycocotools sees them: ids of known images and
categories, finite scores, boxes of finite coordinates not far outside the image, and segmentations that decode
to the image's size (see :func:`densevision.data.masks.segmentation_problem`).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

from densevision.data.coco import bbox_problem
from densevision.data.jsonio import read_json
from densevision.data.masks import is_integer, is_number, segmentation_problem, to_rle
from densevision.errors import DataError
from densevision.io import write_json

RESULT_KEYS = ("bbox", "segmentation")
IMAGES_JSON_SUFFIX = ".images.json"


def images_json_path(results: str | os.PathLike) -> Path:
    """The image list (``{"images": [...], "categories": [...]}``) written beside a results file whose images
    came from a folder: ``R.json`` -> ``R.images.json``."""
    return Path(results).with_suffix(IMAGES_JSON_SUFFIX)


def _integer(value: Any, where: str, key: str) -> int:
    if not is_integer(value):
        raise DataError(f"{where}: {key!r} must be an integer, got {type(value).__name__}")
    return int(value)


def _score(value: Any, where: str) -> float:
    if not is_number(value):
        raise DataError(f"{where}: 'score' must be a finite number, got {value!r:.40}")
    return float(value)


def check_result(
    result: Any,
    where: str,
    images: Mapping[int, Mapping[str, Any]],
    category_ids: Collection[int] | None,
    keys: Sequence[str],
    optional: Sequence[str] = (),
) -> dict[str, Any]:
    """A validated copy of one result: ``image_id``, ``category_id``, ``score`` and the geometry ``keys``
    (``bbox`` as 4 floats, ``segmentation`` as compressed RLE, ``keypoints`` as 3K floats), plus those of the
    geometry keys ``optional`` that the result has; ``DataError`` prefixed with ``where``.

    ``images`` maps ids to entries with ``height`` and ``width``; ``category_ids=None`` accepts any integer.
    """
    if not isinstance(result, dict):
        raise DataError(f"{where}: expected an object, got {type(result).__name__}")
    missing = [k for k in ["image_id", "category_id", "score", *keys] if k not in result]
    if missing:
        raise DataError(f"{where}: missing key {missing[0]!r}")
    image_id = _integer(result["image_id"], where, "image_id")
    if image_id not in images:
        raise DataError(f"{where}: image_id {image_id} is not an image of the ground truth")
    category_id = _integer(result["category_id"], where, "category_id")
    if category_ids is not None and category_id not in category_ids:
        raise DataError(f"{where}: category_id {category_id} is not a category of the ground truth")
    out = {"image_id": image_id, "category_id": category_id, "score": _score(result["score"], where)}
    h, w = images[image_id]["height"], images[image_id]["width"]
    if "bbox" in keys or ("bbox" in optional and "bbox" in result):
        problem = bbox_problem(result["bbox"], h, w, allow_empty=True)
        if problem:
            raise DataError(f"{where}: {problem}")
        out["bbox"] = [float(v) for v in result["bbox"]]
    if "segmentation" in keys or ("segmentation" in optional and "segmentation" in result):
        seg = result["segmentation"]
        problem = None if seg == [] else segmentation_problem(seg, h, w)
        if problem:
            raise DataError(f"{where}: {problem}")
        out["segmentation"] = to_rle(seg, h, w)
    if "keypoints" in keys:
        kpts = result["keypoints"]
        if not isinstance(kpts, list) or not kpts or len(kpts) % 3 or not all(is_number(v) for v in kpts):
            raise DataError(f"{where}: 'keypoints' must be a non-empty list of finite numbers [x, y, v] x K")
        out["keypoints"] = [float(v) for v in kpts]
    return out


def load_results(
    results: str | os.PathLike | Sequence[dict],
    images: Mapping[int, Mapping[str, Any]],
    category_ids: Collection[int] | None = None,
    keys: Sequence[str] = RESULT_KEYS,
    optional: Sequence[str] = (),
    source: str | None = None,
) -> list[dict[str, Any]]:
    """Validated copies of COCO results (a json path or a list), segmentations as compressed RLE.

    Each result needs the ``image_id`` of one of ``images`` (``{id: {"height", "width", ...}}``, already
    validated), a ``category_id`` of ``category_ids`` (any integer when None), a finite ``score`` and the
    geometry ``keys`` (``bbox`` and/or ``segmentation``; ``optional`` ones are checked and kept where present);
    anything else raises a one-line ``DataError`` naming the file (``source``, default the path or "results")
    and the result's index.
    """
    if source is None:
        source = str(results) if isinstance(results, (str, os.PathLike)) else "results"
    if isinstance(results, (str, os.PathLike)):
        results = read_json(results)
    if not isinstance(results, list):
        raise DataError(f"{source}: expected a list of result objects, got {type(results).__name__}")
    if "segmentation" in keys and results and not any(isinstance(r, dict) and "segmentation" in r for r in results):
        raise DataError(f"{source}: no result has a 'segmentation' (an instance mask), which this needs: the results "
                        "of a detector without a mask head (boxes or keypoints only, e.g. Keypoint R-CNN without "
                        "--keypoint-masks)")
    return [check_result(r, f"{source}: result {i}", images, category_ids, keys, optional)
            for i, r in enumerate(results)]


def write_results(path: str | os.PathLike, results: Sequence[Mapping[str, Any]]) -> None:
    """Write a COCO results list atomically (compact JSON)."""
    write_json(path, list(results), indent=None)
