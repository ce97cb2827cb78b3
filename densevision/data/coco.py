"""COCO instance-segmentation files: validation and the ``CocoDetection`` dataset.

Every problem is reported as one line naming the file and the image / annotation id, so a user can fix the data
without reading a traceback. :func:`validate_coco` is the one check of a ground-truth file: ``data check``,
training, evaluation and BPR all run it before pycocotools sees the file.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pycocotools.coco import COCO

from densevision.data.images import (
    ImageRecord,
    image_file_problem,
    image_size_problem,
    load_image,
    safe_image_path,
)
from densevision.data.jsonio import read_json
from densevision.data.masks import FAR_OUTSIDE, annotation_to_mask, is_integer, is_number, segmentation_problem
from densevision.errors import DataError

Transform = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]

__all__ = [
    "ANNOTATION_KEYS",
    "CocoDetection",
    "bbox_problem",
    "check_coco",
    "coco_from_dict",
    "load_coco",
    "validate_coco",
]

ANNOTATION_KEYS = ("bbox", "segmentation")
"""Annotation keys :func:`validate_coco` requires by default (evaluation also needs ``area`` and ``iscrowd``)."""


def bbox_problem(bbox: Any, height: int, width: int, *, allow_empty: bool = False) -> str | None:
    """What is wrong with an XYWH box in an image of ``height``×``width``: not 4 finite numbers, a width or
    height <= 0 (< 0 with ``allow_empty``), or corners far outside the image; None when fine."""
    if not (isinstance(bbox, (list, tuple)) and len(bbox) == 4 and all(is_number(v) for v in bbox)):
        return f"'bbox' must be a list [x, y, w, h] of 4 finite numbers, got {bbox!r:.60}"
    x, y, w, h = bbox
    if allow_empty and (w < 0 or h < 0):
        return f"'bbox' has a negative width or height: {list(bbox)}"
    if not allow_empty and (w <= 0 or h <= 0):
        return f"bbox {list(bbox)} has width or height <= 0"
    if max(abs(x), abs(x + w)) > FAR_OUTSIDE * width or max(abs(y), abs(y + h)) > FAR_OUTSIDE * height:
        return f"bbox {list(bbox)} lies far outside the {width}x{height} image"
    return None


def validate_coco(
    data: Any,
    source: str,
    image_root: str | os.PathLike | None = None,
    *,
    required: Sequence[str] = ANNOTATION_KEYS,
) -> list[str]:
    """List every problem of a COCO instances dict (empty when valid).

    Ids, references, sizes (positive, at most ``MAX_IMAGE_SIDE`` per side), boxes, areas and every
    segmentation (decoded far enough to know pycocotools can read it) are checked; ``required`` names the
    annotation keys that must be present (present ones are always checked). With ``image_root``, each image
    file must also be inside the root, fully decodable and of the declared size.
    """
    if not isinstance(data, dict):
        return [f"{source}: top level must be an object with 'images', 'annotations', 'categories'"]
    problems: list[str] = []
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            problems.append(f"{source}: missing or non-list key '{key}'")
    if problems:
        return problems

    cat_ids: set[int] = set()
    for i, cat in enumerate(data["categories"]):
        if not isinstance(cat, dict) or not is_integer(cat.get("id")) or not isinstance(cat.get("name"), str):
            problems.append(f"{source}: categories[{i}] needs an integer 'id' and a string 'name'")
        elif cat["id"] in cat_ids:
            problems.append(f"{source}: category id {cat['id']} appears twice")
        else:
            cat_ids.add(cat["id"])

    sizes: dict[int, tuple[int, int]] = {}
    known_images: set[int] = set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not is_integer(img.get("id")):
            problems.append(f"{source}: images[{i}] needs an integer 'id'")
            continue
        where = f"{source}: image id {img['id']}"
        if img["id"] in known_images:
            problems.append(f"{where}: id appears twice")
            continue
        known_images.add(img["id"])
        h, w, name = img.get("height"), img.get("width"), img.get("file_name")
        problem = image_size_problem(h, w)
        if problem:
            problems.append(f"{where}: {problem}")
            continue
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: 'file_name' must be a non-empty string")
            continue
        sizes[img["id"]] = (h, w)
        if image_root is not None:
            problem = image_file_problem(image_root, name, h, w)
            if problem:
                problems.append(f"{where}: {problem}")

    ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not is_integer(ann.get("id")):
            problems.append(f"{source}: annotations[{i}] needs an integer 'id'")
            continue
        where = f"{source}: annotation id {ann['id']}"
        if ann["id"] in ann_ids:
            problems.append(f"{where}: id appears twice")
            continue
        ann_ids.add(ann["id"])
        problem = _annotation_problem(ann, known_images, sizes, cat_ids, required)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _annotation_problem(
    ann: dict, known_images: set[int], sizes: dict[int, tuple[int, int]], cat_ids: set[int], required: Sequence[str]
) -> str | None:
    image_id, cat_id = ann.get("image_id"), ann.get("category_id")
    if not is_integer(image_id):
        return "'image_id' must be an integer"
    if image_id not in known_images:
        return f"refers to unknown image id {image_id}"
    if not is_integer(cat_id):
        return "'category_id' must be an integer"
    if cat_id not in cat_ids:
        return f"refers to unknown category id {cat_id}"
    missing = [k for k in required if k not in ann]
    if missing:
        return f"missing '{missing[0]}'"
    if ann.get("iscrowd", 0) not in (0, 1) or isinstance(ann.get("iscrowd"), float):
        return "'iscrowd' must be 0 or 1"
    if "area" in ann and not (is_number(ann["area"]) and ann["area"] >= 0):
        return f"'area' must be a finite number >= 0, got {ann['area']!r:.40}"
    if image_id not in sizes:  # the image entry itself is invalid and reported on its own
        return None
    h, w = sizes[image_id]
    if "bbox" in ann:
        problem = bbox_problem(ann["bbox"], h, w)
        if problem:
            return problem
    if "segmentation" in ann:
        return segmentation_problem(ann["segmentation"], h, w)
    return None


def check_coco(
    data: Any, source: str, image_root: str | os.PathLike | None = None, *, required: Sequence[str] = ANNOTATION_KEYS
) -> dict:
    """``data`` if :func:`validate_coco` finds nothing; else ``DataError`` naming the first problem."""
    problems = validate_coco(data, source, image_root, required=required)
    if problems:
        more = f" ({len(problems)} problems in all; `densevision data check` lists them)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    return data


def load_coco(
    path: str | os.PathLike, image_root: str | os.PathLike | None = None, *, required: Sequence[str] = ANNOTATION_KEYS
) -> dict:
    """Read and validate a COCO instances file; raise ``DataError`` naming the first problem."""
    return check_coco(read_json(path), str(path), image_root, required=required)


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools ``COCO`` index over an in-memory dict (silencing its progress prints)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


class CocoDetection(torch.utils.data.Dataset):
    """COCO instances as torchvision-detection samples.

    ``ds[i] -> (image, target)``: ``image`` float32 3×H×W in [0, 1] (RGB); ``target`` has ``boxes`` (N×4 XYXY
    float32), ``labels`` (N int64, contiguous from 1), ``masks`` (N×H×W uint8), ``image_id``, ``iscrowd``,
    ``area``. ``label_to_cat`` / ``cat_to_label`` map contiguous labels to the file's own category ids (sorted by id,
    so id 0 and gaps are fine), so that results are written back with the data set's ids.
    """

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_root: str | os.PathLike,
        transforms: Transform | None = None,
        *,
        include_crowd: bool = True,
        check_images: bool = False,
    ) -> None:
        self.ann_file = str(ann_file)
        self.image_root = Path(image_root)
        self.transforms = transforms
        self.include_crowd = include_crowd
        self.dataset = load_coco(ann_file, image_root if check_images else None)
        self.coco = coco_from_dict(self.dataset)
        cats = sorted(self.dataset["categories"], key=lambda c: c["id"])
        self.label_to_cat = {i + 1: c["id"] for i, c in enumerate(cats)}
        self.cat_to_label = {c: label for label, c in self.label_to_cat.items()}
        self.class_names = [c["name"] for c in cats]
        self.image_ids = sorted(self.coco.imgs)
        self._check_files_exist()

    def _check_files_exist(self) -> None:
        """Refuse a missing image file before any training starts (one ``stat`` per image: cheap even for large
        sets; ``check_images`` also decodes every file)."""
        missing = [i for i in self.image_ids if not self.image_path(i).is_file()]
        if missing:
            more = f" ({len(missing)} images missing in all)" if len(missing) > 1 else ""
            raise DataError(f"{self.ann_file}: image id {missing[0]}: image file {self.image_path(missing[0])} "
                            f"not found{more}")

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image under the safe path rule of :func:`densevision.data.images.safe_image_path`."""
        name = self.coco.imgs[image_id]["file_name"]
        return safe_image_path(self.image_root, name, f"{self.ann_file}: image id {image_id}")

    def image_record(self, image_id: int) -> ImageRecord:
        """The :class:`ImageRecord` of an image (path, declared size, this json as its source)."""
        info = self.coco.imgs[image_id]
        return ImageRecord(image_id, self.image_path(image_id), info["file_name"], info["height"], info["width"],
                           self.ann_file)

    def load_image(self, image_id: int) -> torch.Tensor:
        """3×H×W float32 image in [0, 1], checked against the size declared in the json."""
        return torch.from_numpy(load_image(self.image_record(image_id))).permute(2, 0, 1).float().div_(255.0)

    def load_target(self, image_id: int) -> dict[str, torch.Tensor]:
        """The detection target of one image, before transforms."""
        info = self.coco.imgs[image_id]
        h, w = info["height"], info["width"]
        anns = self.coco.imgToAnns.get(image_id, [])
        if not self.include_crowd:
            anns = [a for a in anns if not a.get("iscrowd", 0)]
        masks = np.zeros((len(anns), h, w), dtype=np.uint8)
        boxes = np.zeros((len(anns), 4), dtype=np.float32)
        for k, ann in enumerate(anns):
            masks[k] = annotation_to_mask(ann["segmentation"], h, w)
            x, y, bw, bh = ann["bbox"]
            boxes[k] = (x, y, min(x + bw, w), min(y + bh, h))
        return {
            "boxes": torch.from_numpy(boxes),
            "labels": torch.tensor([self.cat_to_label[a["category_id"]] for a in anns], dtype=torch.int64),
            "masks": torch.from_numpy(masks),
            "image_id": torch.tensor(image_id, dtype=torch.int64),
            "iscrowd": torch.tensor([a.get("iscrowd", 0) for a in anns], dtype=torch.int64),
            "area": torch.tensor([float(a.get("area", masks[k].sum())) for k, a in enumerate(anns)],
                                 dtype=torch.float32),
        }

    def __getitem__(self, index: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        image_id = self.image_ids[index]
        image, target = self.load_image(image_id), self.load_target(image_id)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target
