"""COCO instance-segmentation files: validation, image reading and the ``CocoDetection`` dataset.

Every problem is reported as one line naming the file and the image / annotation id, so a user can fix the data
without reading a traceback.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from densevision.errors import DataError

Transform = Callable[[torch.Tensor, dict], tuple[torch.Tensor, dict]]


def read_json(path: str | os.PathLike) -> Any:
    """Parse a JSON file, turning I/O and syntax errors into one-line ``DataError``s."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool) and np.isfinite(v)


def _check_segmentation(seg: Any, height: int, width: int) -> str | None:
    """Return what is wrong with one annotation's ``segmentation`` field, or None."""
    if isinstance(seg, list):
        if not seg:
            return "segmentation is an empty polygon list"
        for poly in seg:
            if not isinstance(poly, list) or not all(_is_number(v) for v in poly):
                return "segmentation polygon must be a list of numbers"
            if len(poly) < 6 or len(poly) % 2:
                return f"segmentation polygon has {len(poly)} coordinates; needs an even number, at least 3 points"
        return None
    if isinstance(seg, dict):
        size, counts = seg.get("size"), seg.get("counts")
        if not (isinstance(size, list) and len(size) == 2 and all(_is_int(v) for v in size)):
            return "RLE segmentation needs 'size': [height, width]"
        if list(size) != [height, width]:
            return f"RLE size {size} differs from the image size [{height}, {width}]"
        if isinstance(counts, list):
            if not all(_is_int(v) and v >= 0 for v in counts) or sum(counts) != height * width:
                return "uncompressed RLE counts must be non-negative integers summing to height*width"
        elif not isinstance(counts, str):
            return "RLE 'counts' must be a string (compressed) or a list of integers"
        return None
    return f"segmentation must be a polygon list or an RLE dict, not {type(seg).__name__}"


def _safe_image_path(image_root: Path, file_name: str) -> Path | None:
    """``image_root / file_name`` if it stays inside ``image_root``, else None."""
    root = image_root.resolve()
    path = (root / file_name).resolve()
    return path if path == root or root in path.parents else None


def validate_coco(data: Any, source: str, image_root: str | os.PathLike | None = None) -> list[str]:
    """List every problem of a COCO instances dict (empty when valid); with ``image_root``, also check that each
    image file exists inside the root, is readable and has the declared size."""
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
        if not isinstance(cat, dict) or not _is_int(cat.get("id")) or not isinstance(cat.get("name"), str):
            problems.append(f"{source}: categories[{i}] needs an integer 'id' and a string 'name'")
        elif cat["id"] in cat_ids:
            problems.append(f"{source}: category id {cat['id']} appears twice")
        else:
            cat_ids.add(cat["id"])

    sizes: dict[int, tuple[int, int]] = {}
    known_images: set[int] = set()
    root = Path(image_root) if image_root is not None else None
    for i, img in enumerate(data["images"]):
        if not isinstance(img, dict) or not _is_int(img.get("id")):
            problems.append(f"{source}: images[{i}] needs an integer 'id'")
            continue
        where = f"{source}: image id {img['id']}"
        if img["id"] in known_images:
            problems.append(f"{where}: id appears twice")
            continue
        known_images.add(img["id"])
        h, w, name = img.get("height"), img.get("width"), img.get("file_name")
        if not (_is_int(h) and _is_int(w) and h > 0 and w > 0):
            problems.append(f"{where}: 'height' and 'width' must be positive integers")
            continue
        if not isinstance(name, str) or not name:
            problems.append(f"{where}: 'file_name' must be a non-empty string")
            continue
        sizes[img["id"]] = (h, w)
        if root is not None:
            problem = _check_image_file(root, name, h, w)
            if problem:
                problems.append(f"{where}: {problem}")

    ann_ids: set[int] = set()
    for i, ann in enumerate(data["annotations"]):
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            problems.append(f"{source}: annotations[{i}] needs an integer 'id'")
            continue
        where = f"{source}: annotation id {ann['id']}"
        if ann["id"] in ann_ids:
            problems.append(f"{where}: id appears twice")
            continue
        ann_ids.add(ann["id"])
        problem = _check_annotation(ann, known_images, sizes, cat_ids)
        if problem:
            problems.append(f"{where}: {problem}")
    return problems


def _check_image_file(root: Path, name: str, height: int, width: int) -> str | None:
    path = _safe_image_path(root, name)
    if path is None:
        return f"file_name {name!r} escapes the image root {root}"
    if not path.is_file():
        return f"image file {path} not found"
    try:
        with Image.open(path) as im:
            w, h = im.size
    except (UnidentifiedImageError, OSError) as exc:
        return f"image file {path} is unreadable ({exc.__class__.__name__})"
    if (h, w) != (height, width):
        return f"image file {path} is {w}x{h}, the json says {width}x{height}"
    return None


def _check_annotation(
    ann: dict, known_images: set[int], sizes: dict[int, tuple[int, int]], cat_ids: set[int]
) -> str | None:
    image_id, cat_id = ann.get("image_id"), ann.get("category_id")
    if not _is_int(image_id):
        return "'image_id' must be an integer"
    if image_id not in known_images:
        return f"refers to unknown image id {image_id}"
    if not _is_int(cat_id):
        return "'category_id' must be an integer"
    if cat_id not in cat_ids:
        return f"refers to unknown category id {cat_id}"
    if ann.get("iscrowd", 0) not in (0, 1):
        return "'iscrowd' must be 0 or 1"
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        return "'bbox' must be a list of 4 numbers [x, y, width, height]"
    if bbox[2] <= 0 or bbox[3] <= 0:
        return f"bbox {bbox} has width or height <= 0"
    if "segmentation" not in ann:
        return "missing 'segmentation'"
    if image_id not in sizes:  # the image entry itself is invalid and reported on its own
        return None
    return _check_segmentation(ann["segmentation"], *sizes[image_id])


def load_coco(path: str | os.PathLike, image_root: str | os.PathLike | None = None) -> dict:
    """Read and validate a COCO instances file; raise ``DataError`` naming the first problem."""
    data = read_json(path)
    problems = validate_coco(data, str(path), image_root)
    if problems:
        more = f" ({len(problems)} problems in all; `densevision data check` lists them)" if len(problems) > 1 else ""
        raise DataError(problems[0] + more)
    return data


def coco_from_dict(data: dict) -> COCO:
    """A pycocotools ``COCO`` index over an in-memory dict (silencing its progress prints)."""
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read any image (grayscale, RGBA, palette, 16-bit) as H×W×3 uint8 RGB."""
    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float64)
                scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
                im = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
            elif im.mode == "F":
                arr = np.asarray(im, dtype=np.float64)
                im = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
            return np.array(im.convert("RGB"))
    except FileNotFoundError:
        raise DataError(f"{path}: image file not found") from None
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{path}: unreadable image ({exc.__class__.__name__}: {exc})") from None


def annotation_to_mask(segmentation: list | dict, height: int, width: int) -> np.ndarray:
    """Decode polygons, uncompressed or compressed RLE to an H×W uint8 {0,1} mask."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation["counts"], list):
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(np.uint8)


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

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, image_id: int) -> Path:
        """Absolute path of an image, refusing file names that leave the image root."""
        name = self.coco.imgs[image_id]["file_name"]
        path = _safe_image_path(self.image_root, name)
        if path is None:
            raise DataError(f"{self.ann_file}: image id {image_id}: file_name {name!r} escapes {self.image_root}")
        return path

    def load_image(self, image_id: int) -> torch.Tensor:
        """3×H×W float32 image in [0, 1], checked against the size declared in the json."""
        info = self.coco.imgs[image_id]
        try:
            arr = read_image(self.image_path(image_id))
        except DataError as exc:
            raise DataError(f"{self.ann_file}: image id {image_id}: {exc}") from None
        if arr.shape[:2] != (info["height"], info["width"]):
            raise DataError(
                f"{self.ann_file}: image id {image_id}: file is {arr.shape[1]}x{arr.shape[0]}, "
                f"the json says {info['width']}x{info['height']}"
            )
        return torch.from_numpy(arr).permute(2, 0, 1).float().div_(255.0)

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
