"""Images: the one safe path rule, reading any image file, image records and the dataset every reader uses.

The path rule: an image's ``file_name`` is relative to the image root and must stay inside it once resolved,
so absolute names, ``..`` escapes and symlinks pointing outside the root are refused. Images declaring more
than ``MAX_IMAGE_SIDE`` pixels per side are refused before anything allocates them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from densevision.data.jsonio import read_json
from densevision.data.masks import is_integer
from densevision.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
MAX_IMAGE_SIDE = 2**14


def pil_to_rgb(im: Image.Image) -> np.ndarray:
    """A decoded PIL image of any mode (grayscale, RGBA, palette, 16-bit, float) as H×W×3 uint8 RGB; 16-bit
    values are scaled from 0–65535 (0–255 when none exceeds 255), float ones from [0, 1]."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float64)
        scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(arr / scale * 255.0 + 0.5, 0, 255).astype(np.uint8))
    elif im.mode == "F":
        arr = np.asarray(im, dtype=np.float64)
        im = Image.fromarray(np.clip(arr * 255.0 + 0.5, 0, 255).astype(np.uint8))
    return np.array(im.convert("RGB"))


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read and fully decode any image (grayscale, RGBA, palette, 16-bit) as H×W×3 uint8 RGB
    (:func:`pil_to_rgb`); a missing, truncated or unreadable file raises ``DataError``."""
    try:
        with Image.open(path) as im:
            im.load()
            return pil_to_rgb(im)
    except FileNotFoundError:
        raise DataError(f"image file {path} not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"image file {path} is unreadable ({exc.__class__.__name__}: {exc})") from None


def image_size_problem(height: Any, width: Any) -> str | None:
    """What is wrong with a declared image size, or None."""
    if not (is_integer(height) and is_integer(width) and height > 0 and width > 0):
        return f"'height' and 'width' must be positive integers, got {height!r:.20} and {width!r:.20}"
    if height > MAX_IMAGE_SIDE or width > MAX_IMAGE_SIDE:
        return f"declared size {width}x{height} exceeds the limit of {MAX_IMAGE_SIDE} pixels per side"
    return None


def _path_problem(root: Path, file_name: Any) -> tuple[Path | None, str | None]:
    if not isinstance(file_name, str) or not file_name:
        return None, "'file_name' must be a non-empty string"
    if os.path.isabs(file_name):
        return None, f"file_name {file_name!r} is an absolute path; it must be relative to the image root {root}"
    try:
        path = (root / file_name).resolve()
    except (OSError, ValueError):
        return None, f"file_name {file_name!r} is not a valid path"
    if root not in path.parents:
        return None, f"file_name {file_name!r} escapes the image root {root}"
    return path, None


def safe_image_path(image_root: str | os.PathLike, file_name: Any, where: str) -> Path:
    """The resolved ``image_root / file_name`` if it stays inside the root (no absolute name, no ``..`` escape,
    no symlink leading outside); otherwise ``DataError`` prefixed with ``where`` (file and image id)."""
    path, problem = _path_problem(Path(image_root).resolve(), file_name)
    if problem:
        raise DataError(f"{where}: {problem}")
    return path


def image_file_problem(image_root: str | os.PathLike, file_name: str, height: int, width: int) -> str | None:
    """What is wrong with an image file (path rule, existence, a full decode, the declared size), or None."""
    path, problem = _path_problem(Path(image_root).resolve(), file_name)
    if problem:
        return problem
    try:
        arr = read_image(path)
    except DataError as exc:
        return str(exc)
    if arr.shape[:2] != (height, width):
        return f"image file {path} is {arr.shape[1]}x{arr.shape[0]}, the json says {width}x{height}"
    return None


@dataclass(frozen=True)
class ImageRecord:
    """One image to read: its id, file, the name to report, (when known) the size a json declares and the
    json declaring it (``source``, named in errors)."""

    image_id: int
    path: Path
    file_name: str
    height: int | None = None
    width: int | None = None
    source: str | None = None

    @property
    def where(self) -> str:
        """``"<json>: image id <id>"``, the prefix of this image's errors."""
        return f"{self.source}: image id {self.image_id}" if self.source else f"image id {self.image_id}"


def record_from_entry(entry: Mapping[str, Any], image_root: str | os.PathLike, source: str) -> ImageRecord:
    """The record of a checked COCO image entry (``id``, ``file_name``, ``height``, ``width``), its path under
    the safe path rule."""
    where = f"{source}: image id {entry['id']}"
    path = safe_image_path(image_root, entry["file_name"], where)
    return ImageRecord(entry["id"], path, entry["file_name"], entry.get("height"), entry.get("width"), source)


def load_image(record: ImageRecord) -> np.ndarray:
    """The image of a record as H×W×3 uint8, checked against its declared size; errors name json and id."""
    try:
        arr = read_image(record.path)
    except DataError as exc:
        raise DataError(f"{record.where}: {exc}") from None
    if record.height is not None and arr.shape[:2] != (record.height, record.width):
        raise DataError(f"{record.where}: {record.path} is {arr.shape[1]}x{arr.shape[0]}, "
                        f"the json says {record.width}x{record.height}")
    return arr


class ImageDataset(Dataset):
    """``ds[i] -> (image_id, image)`` with ``image`` float32 3×H×W in [0, 1] RGB (any file format
    :func:`read_image` reads), checked against the declared size."""

    def __init__(self, records: Sequence[ImageRecord]) -> None:
        self.records = list(records)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[int, torch.Tensor]:
        rec = self.records[index]
        return rec.image_id, torch.from_numpy(load_image(rec)).permute(2, 0, 1).float().div_(255.0)


def records_from_folder(images: str | os.PathLike) -> list[ImageRecord]:
    """Every image file directly inside a folder (or one file), ids 1..N in sorted file-name order."""
    root = Path(images)
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        if not files:
            raise DataError(f"{root}: no image files ({', '.join(IMAGE_EXTENSIONS)})")
    else:
        raise DataError(f"{root}: no such file or folder")
    return [ImageRecord(i + 1, p, p.name) for i, p in enumerate(files)]


def records_from_coco(ann: str | os.PathLike, images: str | os.PathLike) -> tuple[list[ImageRecord], list[dict]]:
    """The images of a COCO json (``file_name`` relative to ``images``) and its categories; annotations are not
    needed (a test-set image-info file without sizes works)."""
    data = read_json(ann)
    if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
        raise DataError(f"{ann}: expected an object with an 'images' list")
    records, seen = [], set()
    for i, img in enumerate(data["images"]):
        if not isinstance(img, Mapping) or not is_integer(img.get("id")):
            raise DataError(f"{ann}: images[{i}] needs an integer 'id' and a 'file_name'")
        where = f"{ann}: image id {img['id']}"
        if img["id"] in seen:
            raise DataError(f"{where} appears twice")
        seen.add(img["id"])
        if img.get("height") is not None or img.get("width") is not None:
            problem = image_size_problem(img.get("height"), img.get("width"))
            if problem:
                raise DataError(f"{where}: {problem}")
        record = record_from_entry(img, images, str(ann))
        if not record.path.is_file():
            raise DataError(f"{where}: image file {record.path} not found")
        records.append(record)
    if not records:
        raise DataError(f"{ann}: the 'images' list is empty")
    return records, list(data.get("categories") or [])
