"""Label-map data sets in the layouts of ADE20K, Cityscapes and COCO instance files, beside the generic one of
:mod:`densevision.data.labelmaps`; each gives its class names and per split its ``(image, label)`` pairs.

- ``ade20k``: ``ROOT/ADEChallengeData2016`` (or ``ROOT`` itself) holding ``images/{training,validation}/*.jpg``
  and ``annotations/{training,validation}/*.png`` matched by stem; 150 classes (mmsegmentation's names);
  label 0 is "other", so reduce-zero-label is always on (0 → 255, v → v − 1).
- ``cityscapes``: ``ROOT/leftImg8bit/{train,val}/<city>/<name>_leftImg8bit.png`` with
  ``ROOT/gtFine/{train,val}/<city>/<name>_gtFine_labelTrainIds.png``; 19 classes, 255 = ignore. The trainIds
  files are made from the polygons by cityscapesscripts' ``createTrainIdLabelImgs``; a split holding only
  ``*_gtFine_labelIds.png`` (ids 0–33, not class indices) is refused with that advice.
- ``coco``: a COCO instances json and its image folder, each image's label map drawn on demand from its
  annotations (nothing is written to disk): class 0 = background, then the categories in id order; crowd
  regions 255 (ignored) drawn first, then the other instances from the largest to the smallest, so a smaller
  instance lying on a larger one stays visible (equal areas: the later annotation on top).
"""

from __future__ import annotations

import os
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from densevision.data.coco import load_coco
from densevision.data.images import safe_image_path
from densevision.data.labelmaps import IGNORE_INDEX, LabelPairs, match_by_stem, read_classes
from densevision.data.masks import annotation_to_mask
from densevision.errors import DataError, DenseVisionError

FORMATS = ("generic", "ade20k", "cityscapes", "coco")

FORMAT_USAGE = {
    "generic": "--train-images DIR --train-labels DIR --classes FILE [--val-images DIR --val-labels DIR]",
    "ade20k": "--data ROOT (ADEChallengeData2016, or the folder holding its images/ and annotations/)",
    "cityscapes": "--data ROOT (the folder holding leftImg8bit/ and gtFine/)",
    "coco": "--train-json FILE --train-images DIR [--val-json FILE --val-images DIR]",
}
"""What each format is given on the command line."""

_FORMAT_FLAGS = {
    "generic": {"train_images", "train_labels", "val_images", "val_labels", "classes", "reduce_zero_label"},
    "ade20k": {"data", "reduce_zero_label"},
    "cityscapes": {"data"},
    "coco": {"train_json", "train_images", "val_json", "val_images"},
}

ADE20K_DIR = "ADEChallengeData2016"
ADE20K_CLASSES = (
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator", "glass",
    "clock", "flag",
)
"""The 150 ADE20K (SceneParsing) classes in label order, as mmsegmentation's ``ADE20KDataset`` names them."""

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
)
"""The 19 Cityscapes evaluation classes in trainId order."""

CITYSCAPES_IMAGE = "_leftImg8bit.png"
CITYSCAPES_LABEL = "_gtFine_labelTrainIds.png"
CITYSCAPES_IDS = "_gtFine_labelIds.png"


@dataclass
class LabelMapData:
    """A label-map data set: its class names, whether its labels need reduce-zero-label, and its training and
    validation splits (None when absent)."""

    classes: list[str]
    train: LabelPairs | None
    val: LabelPairs | None
    reduce_zero: bool = False

    def splits(self) -> list[LabelPairs]:
        """The splits present, training first."""
        return [s for s in (self.train, self.val) if s is not None]


# ------------------------------------------------------------------------------------------------ ADE20K
def ade20k_data(root: str | os.PathLike) -> LabelMapData:
    """The ADE20K layout under ``root`` (``ADEChallengeData2016`` or the folder holding ``images/`` and
    ``annotations/``); a split whose image folder is absent is None."""
    base = Path(root)
    if (base / ADE20K_DIR).is_dir():
        base = base / ADE20K_DIR
    if not (base / "images").is_dir() or not (base / "annotations").is_dir():
        raise DataError(f"{root}: not an ADE20K folder: expected {ADE20K_DIR}/ or images/{{training,validation}} "
                        "and annotations/{training,validation}")
    splits = [match_by_stem(base / "images" / split, base / "annotations" / split)
              if (base / "images" / split).is_dir() else None for split in ("training", "validation")]
    if splits == [None, None]:
        raise DataError(f"{base}: neither images/training nor images/validation")
    return LabelMapData(list(ADE20K_CLASSES), *splits, reduce_zero=True)


# ------------------------------------------------------------------------------------------------ Cityscapes
def cityscapes_split(root: str | os.PathLike, split: str) -> LabelPairs:
    """The ``split`` (``train`` / ``val``) of a Cityscapes folder: each ``<city>/<name>_leftImg8bit.png`` with its
    ``<name>_gtFine_labelTrainIds.png``; a split with ``*_gtFine_labelIds.png`` but no trainIds file at all
    raises ``DataError`` saying how to make them."""
    root = Path(root)
    images, labels = root / "leftImg8bit" / split, root / "gtFine" / split
    if not labels.is_dir():
        raise DataError(f"{labels}: labels folder not found")
    if not any(labels.glob(f"*/*{CITYSCAPES_LABEL}")) and any(labels.glob(f"*/*{CITYSCAPES_IDS}")):
        raise DataError(f"{labels}: only *{CITYSCAPES_IDS} files (Cityscapes ids, not the 19 class indices); the "
                        f"*{CITYSCAPES_LABEL} files are made by cityscapesscripts' createTrainIdLabelImgs: "
                        f"pip install cityscapesscripts && CITYSCAPES_DATASET={root} csCreateTrainIdLabelImgs")
    split_pairs = LabelPairs(str(images), [])
    for image in sorted(images.glob(f"*/*{CITYSCAPES_IMAGE}")):
        label = labels / image.parent.name / (image.name.removesuffix(CITYSCAPES_IMAGE) + CITYSCAPES_LABEL)
        if label.is_file():
            split_pairs.pairs.append((image, label))
        else:
            split_pairs.missing.append(f"{image}: no label file {label}")
    for label in sorted(labels.glob(f"*/*{CITYSCAPES_LABEL}")):
        image = images / label.parent.name / (label.name.removesuffix(CITYSCAPES_LABEL) + CITYSCAPES_IMAGE)
        if not image.is_file():
            split_pairs.extra.append(f"{label}: no image {image}")
    return split_pairs


def cityscapes_data(root: str | os.PathLike) -> LabelMapData:
    """The Cityscapes layout under ``root`` (``leftImg8bit/`` and ``gtFine/``); a split whose image folder is
    absent is None."""
    root = Path(root)
    if not (root / "leftImg8bit").is_dir() or not (root / "gtFine").is_dir():
        raise DataError(f"{root}: not a Cityscapes folder: expected leftImg8bit/{{train,val}}/<city>/ and "
                        "gtFine/{train,val}/<city>/")
    splits = [cityscapes_split(root, split) if (root / "leftImg8bit" / split).is_dir() else None
              for split in ("train", "val")]
    if splits == [None, None]:
        raise DataError(f"{root}: neither leftImg8bit/train nor leftImg8bit/val")
    return LabelMapData(list(CITYSCAPES_CLASSES), *splits)


# ------------------------------------------------------------------------------------------------ COCO
@dataclass(frozen=True)
class CocoLabel:
    """The label map of one COCO image, drawn when read: ``instances`` are ``(value, segmentation)`` with value
    255 for crowd regions (a :class:`~densevision.data.labelmaps.LabelSource`)."""

    source: str
    height: int
    width: int
    instances: tuple[tuple[int, Any], ...]

    def read(self) -> np.ndarray:
        """H×W uint8: 0 background, crowd regions 255 first, then the instances from the largest to the smallest
        (equal areas: the later one on top)."""
        label = np.zeros((self.height, self.width), np.uint8)
        masks = [(value, annotation_to_mask(seg, self.height, self.width) > 0) for value, seg in self.instances]
        for value, mask in masks:
            if value == IGNORE_INDEX:
                label[mask] = value
        for value, mask in sorted((m for m in masks if m[0] != IGNORE_INDEX), key=lambda m: -int(m[1].sum())):
            label[mask] = value
        return label

    def __str__(self) -> str:
        return self.source


def coco_label_pairs(ann_file: str | os.PathLike,
                     image_root: str | os.PathLike | None = None) -> tuple[list[str], LabelPairs]:
    """Class names (``background``, then the categories in id order) and the ``(image, CocoLabel)`` pairs of a
    COCO instances file, in image-id order. Without ``image_root`` the images are the json's file names (enough
    to match predictions by stem)."""
    data = load_coco(ann_file, required=("segmentation",))
    cats = sorted(data["categories"], key=lambda c: c["id"])
    if len(cats) >= IGNORE_INDEX:
        raise DataError(f"{ann_file}: {len(cats)} categories; a label map holds at most {IGNORE_INDEX - 1} "
                        f"besides background (0) and ignore ({IGNORE_INDEX})")
    classes = ["background", *(c["name"] for c in cats)]
    if len(set(classes)) != len(classes):
        raise DataError(f"{ann_file}: category names repeat (or one is 'background', the name of class 0)")
    value = {c["id"]: i + 1 for i, c in enumerate(cats)}
    by_image: dict[int, list[tuple[int, Any]]] = defaultdict(list)
    for ann in data["annotations"]:
        by_image[ann["image_id"]].append(
            (IGNORE_INDEX if ann.get("iscrowd", 0) else value[ann["category_id"]], ann["segmentation"]))
    pairs = []
    for img in sorted(data["images"], key=lambda i: i["id"]):
        where = f"{ann_file}: image id {img['id']}"
        image = Path(img["file_name"]) if image_root is None else safe_image_path(image_root, img["file_name"], where)
        pairs.append((image, CocoLabel(where, img["height"], img["width"], tuple(by_image[img["id"]]))))
    return classes, LabelPairs(str(ann_file), pairs)


def coco_data(train_json: str | os.PathLike | None, train_images: str | os.PathLike | None,
              val_json: str | os.PathLike | None = None, val_images: str | os.PathLike | None = None) -> LabelMapData:
    """COCO instance files as label maps: a training and / or a validation split with the same categories."""
    splits, classes = [], []
    for ann, images, flags in ((train_json, train_images, "--train-json and --train-images"),
                               (val_json, val_images, "--val-json and --val-images")):
        if (ann is None) != (images is None):
            raise DenseVisionError(f"{flags} go together")
        if ann is None:
            splits.append(None)
            continue
        names, pairs = coco_label_pairs(ann, images)
        if classes and names != classes:
            raise DataError(f"{ann}: categories differ from those of {train_json}")
        classes = names
        splits.append(pairs)
    return LabelMapData(classes, *splits)


# ------------------------------------------------------------------------------------------------ any format
def label_map_data(format: str = "generic", *, data: str | os.PathLike | None = None,
                   train_images: str | os.PathLike | None = None, train_labels: str | os.PathLike | None = None,
                   val_images: str | os.PathLike | None = None, val_labels: str | os.PathLike | None = None,
                   classes: str | os.PathLike | None = None, reduce_zero_label: bool = False,
                   train_json: str | os.PathLike | None = None,
                   val_json: str | os.PathLike | None = None) -> LabelMapData:
    """The data set that ``format`` and its sources (named as the ``seg train`` flags) describe; a source the
    format does not take, or half of a pair, is a one-line ``DenseVisionError``. ``reduce_zero_label`` is the
    generic layout's choice; ADE20K always reduces."""
    if format not in FORMATS:
        raise DenseVisionError(f"--format {format}: expected one of {', '.join(FORMATS)}")
    given = {"data": data, "train_images": train_images, "train_labels": train_labels, "val_images": val_images,
             "val_labels": val_labels, "classes": classes, "reduce_zero_label": reduce_zero_label or None,
             "train_json": train_json, "val_json": val_json}
    stray = sorted(k for k, v in given.items() if v is not None and k not in _FORMAT_FLAGS[format])
    if stray:
        raise DenseVisionError(f"--{stray[0].replace('_', '-')} does not go with --format {format}, which takes "
                               f"{FORMAT_USAGE[format]}")
    if format in ("ade20k", "cityscapes"):
        if data is None:
            raise DenseVisionError(f"--format {format} needs {FORMAT_USAGE[format]}")
        return ade20k_data(data) if format == "ade20k" else cityscapes_data(data)
    if format == "coco":
        return coco_data(train_json, train_images, val_json, val_images)
    if classes is None:
        raise DenseVisionError(f"--format generic needs {FORMAT_USAGE['generic']}")
    splits = []
    for images, labels, flags in ((train_images, train_labels, "--train-images and --train-labels"),
                                  (val_images, val_labels, "--val-images and --val-labels")):
        if (images is None) != (labels is None):
            raise DenseVisionError(f"{flags} go together")
        splits.append(None if images is None else match_by_stem(images, labels))
    return LabelMapData(read_classes(classes), *splits, reduce_zero=reduce_zero_label)
