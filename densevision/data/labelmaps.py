"""Semantic label maps: single-channel PNGs of class indices (255 = ignore), their class list, image/label
pairs, checks, and the mmsegmentation training pipeline.

Generic layout: an images folder and a labels folder whose files are matched by stem (``a.jpg`` ↔ ``a.png``),
and a ``classes.json`` (a list of names, or ``{"classes": [...]}``). ``reduce_zero_label`` (ADE20K: 0 =
"other") maps 0 → ignore and every other value v → v − 1. A label file must hold indices: greyscale (``L``)
or palette (``P``, the index is the value) PNGs; an RGB file holds colours and is refused. A label may also
be a :class:`LabelSource` (a map drawn on demand, e.g. from COCO instances: :mod:`densevision.data.seg_formats`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError
from torch.utils.data import Dataset

from densevision.data.images import IMAGE_EXTENSIONS, read_image
from densevision.data.jsonio import read_json
from densevision.data.masks import annotation_to_mask
from densevision.data.transforms import PhotometricJitter
from densevision.errors import DataError
from densevision.io import atomic_open, write_json

IGNORE_INDEX = 255
LABEL_EXTENSION = ".png"
_INDEX_MODES = ("L", "P", "I", "I;16", "I;16B", "I;16L")


# ------------------------------------------------------------------------------------------------ files
def read_classes(path: str | os.PathLike) -> list[str]:
    """Class names from ``classes.json``: a list of names or ``{"classes": [...]}``; at most 255 classes."""
    data = read_json(path)
    names = data.get("classes") if isinstance(data, dict) else data
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n for n in names):
        raise DataError(f"{path}: expected a non-empty list of class names (or {{\"classes\": [...]}})")
    if len(set(names)) != len(names):
        raise DataError(f"{path}: class names repeat")
    if len(names) > IGNORE_INDEX:
        raise DataError(f"{path}: {len(names)} classes; label PNGs hold at most {IGNORE_INDEX} (255 = ignore)")
    return names


def write_classes(path: str | os.PathLike, names: Sequence[str]) -> None:
    """Write ``classes.json`` (``{"classes": [...], "ignore_index": 255}``) atomically."""
    write_json(path, {"classes": list(names), "ignore_index": IGNORE_INDEX})


def reduce_zero_label(label: np.ndarray) -> np.ndarray:
    """ADE20K convention: 0 ("other") → 255, v → v − 1, 255 stays 255 (H×W uint8)."""
    out = label.astype(np.int16) - 1
    out[label == 0] = IGNORE_INDEX
    out[label == IGNORE_INDEX] = IGNORE_INDEX
    return out.astype(np.uint8)


def read_label_map(path: str | os.PathLike, *, reduce_zero: bool = False) -> np.ndarray:
    """A label file as H×W uint8 class indices; RGB / colour files, values > 255 and unreadable files raise
    ``DataError`` naming the file."""
    try:
        with Image.open(path) as im:
            im.load()
            mode = im.mode
            if mode not in _INDEX_MODES:
                raise DataError(f"label file {path} is {mode}: its values are colours, not class indices "
                                "(save single-channel PNGs of class indices)")
            label = np.array(im)
    except FileNotFoundError:
        raise DataError(f"label file {path} not found") from None
    except (UnidentifiedImageError, Image.DecompressionBombError, OSError, ValueError) as exc:
        raise DataError(f"label file {path} is unreadable ({exc.__class__.__name__}: {exc})") from None
    if label.dtype != np.uint8:
        top = int(label.max(initial=0))
        if top > IGNORE_INDEX or int(label.min(initial=0)) < 0:
            raise DataError(f"label file {path}: value {top} is outside 0..255")
        label = label.astype(np.uint8)
    return reduce_zero_label(label) if reduce_zero else label


class LabelSource(Protocol):
    """A label map that is not a PNG of its own (e.g. drawn from instance annotations); ``str()`` names it in
    messages."""

    def read(self) -> np.ndarray:
        """H×W uint8 class indices."""


Label = Path | LabelSource
"""A label PNG or a :class:`LabelSource`."""


def load_label(label: Label, *, reduce_zero: bool = False) -> np.ndarray:
    """H×W uint8 class indices of a label PNG (:func:`read_label_map`) or of a :class:`LabelSource`."""
    if isinstance(label, (str, os.PathLike)):
        return read_label_map(label, reduce_zero=reduce_zero)
    values = label.read()
    return reduce_zero_label(values) if reduce_zero else values


def voc_palette(n: int = 256) -> list[int]:
    """The PASCAL VOC colour map (flat ``[r, g, b, ...]`` for ``n`` indices): distinct colours for small
    indices, index 255 stays recognisable."""
    palette = []
    for i in range(n):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette += [r, g, b]
    return palette


def write_label_map(path: str | os.PathLike, label: np.ndarray) -> None:
    """Write H×W class indices as a palette PNG (the values are the indices; viewers show VOC colours)."""
    im = Image.fromarray(np.ascontiguousarray(label, dtype=np.uint8), mode="P")
    im.putpalette(voc_palette())
    with atomic_open(path, "wb") as f:
        im.save(f, format="PNG")


@dataclass
class LabelPairs:
    """The ``(image, label)`` pairs of one split and what did not pair, one line each: ``missing`` images without
    a label (training refuses them), ``extra`` labels without an image (training leaves them out)."""

    source: str
    pairs: list[tuple[Path, Label]]
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def _empty(self) -> list[str]:
        no_images = not self.pairs and not self.missing
        return [f"{self.source}: no image files ({', '.join(IMAGE_EXTENSIONS)})"] if no_images else []

    def problems(self) -> list[str]:
        """The pairing problems: missing labels, extra labels, no image at all."""
        return [*self.missing, *self.extra, *self._empty()]

    def checked(self) -> list[tuple[Path, Label]]:
        """The pairs; ``DataError`` naming the first image without a label, or an empty split."""
        if self.missing:
            more = len(self.missing) - 1
            raise DataError(self.missing[0] + (f" (and {more} more image(s) without a label; `densevision data "
                                               "check` lists them)" if more else ""))
        if self._empty():
            raise DataError(self._empty()[0])
        return self.pairs


def match_by_stem(images: str | os.PathLike, labels: str | os.PathLike) -> LabelPairs:
    """The generic layout: images of a folder paired with the label PNGs of another by file stem, sorted by stem
    (``.checked()`` gives the pairs or raises on images without a label)."""
    images, labels = Path(images), Path(labels)
    for folder, flag in ((images, "images"), (labels, "labels")):
        if not folder.is_dir():
            raise DataError(f"{folder}: {flag} folder not found")
    image_files = {p.stem: p for p in sorted(images.iterdir()) if p.suffix.lower() in IMAGE_EXTENSIONS}
    label_files = {p.stem: p for p in sorted(labels.iterdir()) if p.suffix.lower() == LABEL_EXTENSION}
    return LabelPairs(
        str(images),
        [(image_files[s], label_files[s]) for s in sorted(image_files.keys() & label_files.keys())],
        [f"{image_files[s]}: no label file {labels / (s + LABEL_EXTENSION)}"
         for s in sorted(image_files.keys() - label_files.keys())],
        [f"{label_files[s]}: no image with stem {s!r} in {images}"
         for s in sorted(label_files.keys() - image_files.keys())],
    )


def invalid_values(label: np.ndarray, num_classes: int, ignore_index: int = IGNORE_INDEX) -> dict[int, int]:
    """``{value: pixel count}`` of the values that are neither a class index nor ``ignore_index``."""
    values, counts = np.unique(label, return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True) if v >= num_classes and v != ignore_index}


def label_map_problems(split: LabelPairs, num_classes: int, *, reduce_zero: bool = False,
                       ignore_index: int = IGNORE_INDEX) -> list[str]:
    """Every problem of a split, one line each: its pairing problems, unreadable or colour label files, label
    sizes that differ from their image's, values that are neither a class nor the ignore value (with pixel
    counts: the mistake that silently gives near-zero IoU)."""
    problems = split.problems()
    for image, label_file in split.pairs:
        try:
            label = load_label(label_file, reduce_zero=reduce_zero)
            with Image.open(image) as im:
                width, height = im.size
        except (DataError, OSError) as exc:
            problems.append(str(exc))
            continue
        if label.shape != (height, width):
            problems.append(f"{label_file}: label is {label.shape[1]}x{label.shape[0]}, "
                            f"image {image.name} is {width}x{height}")
        bad = invalid_values(label, num_classes, ignore_index)
        if bad:
            listed = ", ".join(f"value {v}: {c} px" for v, c in sorted(bad.items()))
            problems.append(f"{label_file}: values outside the {num_classes} classes and ignore "
                            f"{ignore_index}: {listed}")
    return problems


def results_to_label_map(results: Sequence[dict], height: int, width: int, *, score_thr: float = 0.5) -> np.ndarray:
    """Instance results of one image (``category_id``, ``score``, ``segmentation``) painted into an H×W uint8
    label map: 0 where none lies, else the ``category_id`` of the highest-scoring instance scoring at least
    ``score_thr`` (lower scores painted first, higher ones on top)."""
    label = np.zeros((height, width), np.uint8)
    for r in sorted((r for r in results if r["score"] >= score_thr), key=lambda r: r["score"]):
        label[annotation_to_mask(r["segmentation"], height, width) > 0] = r["category_id"]
    return label


# ------------------------------------------------------------------------------------------------ data set
def image_tensor(image: np.ndarray) -> torch.Tensor:
    """H×W×3 uint8 -> 3×H×W float in [0, 1]."""
    return torch.from_numpy(image).permute(2, 0, 1).float().div_(255.0)


class LabelMapDataset(Dataset):
    """Image / label-map pairs: ``dataset[i] -> (3×H×W float in [0, 1], H×W int64 labels)`` after
    ``transform(image, label)``. A label is a PNG or a :class:`LabelSource`. Label values that are neither a
    class nor ``ignore_index`` raise ``DataError`` naming the file, value and pixel count (never a silently
    wrong IoU)."""

    def __init__(self, pairs: Sequence[tuple[Path, Label]], num_classes: int, *, reduce_zero: bool = False,
                 ignore_index: int = IGNORE_INDEX, transform=None) -> None:
        self.pairs = list(pairs)
        self.num_classes = num_classes
        self.reduce_zero = reduce_zero
        self.ignore_index = ignore_index
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        label = load_label(label_path, reduce_zero=self.reduce_zero)
        if label.shape != image.shape[:2]:
            raise DataError(f"{label_path}: label is {label.shape[1]}x{label.shape[0]}, image {image_path.name} "
                            f"is {image.shape[1]}x{image.shape[0]}")
        bad = invalid_values(label, self.num_classes, self.ignore_index)
        if bad:
            value, count = min(bad.items())
            raise DataError(f"{label_path}: value {value} ({count} px) is neither one of the {self.num_classes} "
                            f"classes nor ignore {self.ignore_index} (see `densevision data check`)")
        out = image_tensor(image), torch.from_numpy(label.astype(np.int64))
        return self.transform(*out) if self.transform is not None else out


# ------------------------------------------------------------------------------------------------ pipeline
class SegTrainTransform:
    """mmsegmentation's training pipeline on ``(3×H×W image in [0, 1], H×W int64 label)``:

    1. random rescale: ratio r ~ U(``ratio_range``); the image is resized (keeping its aspect) to fit in
       ``scale`` × r (long, short side), or to r × its own size when ``scale`` is None (labels nearest);
    2. random crop to at most ``crop`` (H, W), retried up to 10 times until no class covers more than
       ``cat_max_ratio`` of the crop's labelled pixels;
    3. horizontal flip with probability ``flip``;
    4. photometric distortion (brightness, contrast ±50 %, saturation ±50 %, hue ±18°, random order);
    5. padding to ``crop`` (image 0, label ``ignore_index``).

    Randomness comes from torch's generator (seeded per sample by the engine).
    """

    def __init__(self, crop: Sequence[int], *, scale: Sequence[int] | None = (2048, 512),
                 ratio_range: Sequence[float] = (0.5, 2.0), cat_max_ratio: float = 0.75, flip: float = 0.5,
                 photometric: bool = True, ignore_index: int = IGNORE_INDEX) -> None:
        self.crop = (int(crop[0]), int(crop[1]))
        self.scale = None if scale is None else (max(scale), min(scale))
        self.ratio_range = (float(ratio_range[0]), float(ratio_range[1]))
        self.cat_max_ratio = cat_max_ratio
        self.flip = flip
        self.jitter = PhotometricJitter(brightness=0.125, contrast=0.5, saturation=0.5, hue=0.05) \
            if photometric else None
        self.ignore_index = ignore_index

    def _uniform(self, low: float, high: float) -> float:
        return low + (high - low) * float(torch.rand(()))

    def rescale(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = label.shape
        ratio = self._uniform(*self.ratio_range)
        if self.scale is None:
            factor = ratio
        else:
            factor = min(self.scale[0] * ratio / max(h, w), self.scale[1] * ratio / min(h, w))
        size = (max(1, int(h * factor + 0.5)), max(1, int(w * factor + 0.5)))
        image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False)[0].clamp_(0, 1)
        label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
        return image, label

    def _crop_box(self, h: int, w: int) -> tuple[int, int, int, int]:
        ch, cw = min(self.crop[0], h), min(self.crop[1], w)
        y = int(torch.randint(0, h - ch + 1, ()))
        x = int(torch.randint(0, w - cw + 1, ()))
        return y, x, ch, cw

    def random_crop(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h, w = label.shape
        y, x, ch, cw = self._crop_box(h, w)
        if self.cat_max_ratio < 1.0:
            for _ in range(10):
                counts = torch.bincount(label[y:y + ch, x:x + cw].flatten(), minlength=self.ignore_index + 1)
                counts = counts[torch.arange(len(counts)) != self.ignore_index]
                counts = counts[counts > 0]
                if len(counts) > 1 and float(counts.max()) / float(counts.sum()) < self.cat_max_ratio:
                    break
                y, x, ch, cw = self._crop_box(h, w)
        return image[:, y:y + ch, x:x + cw], label[y:y + ch, x:x + cw]

    def pad(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        dh, dw = self.crop[0] - label.shape[0], self.crop[1] - label.shape[1]
        if dh > 0 or dw > 0:
            image = F.pad(image, (0, max(dw, 0), 0, max(dh, 0)), value=0.0)
            label = F.pad(label, (0, max(dw, 0), 0, max(dh, 0)), value=self.ignore_index)
        return image, label

    def __call__(self, image: torch.Tensor, label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        image, label = self.random_crop(*self.rescale(image, label))
        if float(torch.rand(())) < self.flip:
            image, label = image.flip(-1), label.flip(-1)
        if self.jitter is not None:
            image, _ = self.jitter(image.contiguous(), None)
        return self.pad(image.contiguous(), label.contiguous())

