"""Keypoint R-CNN data: COCO keypoint annotations as torchvision detection targets in a stacked keypoint layout.

torchvision's keypoint head (built by :func:`~densevision.detection.build_mask_rcnn` with
``detector="keypoint_rcnn"``) predicts the same ``J`` heatmap channels for every detection. Categories with
different keypoint sets share them through :class:`~densevision.data.keypoints.KeypointLayout`: each category
owns a contiguous slice of the ``J`` stacked channels. An instance's target holds its keypoints in its
category's slice and zero visibility everywhere else, so torchvision's loss (a softmax over the 56×56 heatmap
of each visible keypoint) trains each channel only on its own category; at inference a detection reports the
slice of its predicted category (:func:`~densevision.detection.results.detections_to_coco` with
:func:`keypoint_channels`).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import torch

from densevision.data.coco import CocoDetection, Transform
from densevision.data.keypoints import KeypointLayout
from densevision.data.masks import is_number
from densevision.errors import DataError


def keypoint_channels(layout: KeypointLayout) -> dict[int, slice]:
    """Category id -> the slice of the stacked keypoint channels its keypoints occupy."""
    return {cat_id: cat.channels for cat_id, cat in layout.categories.items()}


def check_keypoint_annotations(annotations: Iterable[Mapping[str, Any]], layout: KeypointLayout, source: str) -> None:
    """Raise ``DataError`` naming the first annotation of a keypoint category whose ``keypoints`` are not
    ``3 × K`` finite numbers (K: its category's keypoint count); annotations without ``keypoints`` are fine."""
    for ann in annotations:
        cat = layout.categories.get(ann["category_id"])
        flat = ann.get("keypoints")
        if cat is None or flat is None:
            continue
        k = len(cat.keypoints)
        if not isinstance(flat, list) or len(flat) != 3 * k or not all(is_number(v) for v in flat):
            raise DataError(f"{source}: annotation id {ann['id']} needs 'keypoints' of 3 x {k} numbers for category "
                            f"{cat.id}, got {flat!r:.60}")


def stacked_keypoints(annotations: Iterable[Mapping[str, Any]], layout: KeypointLayout) -> torch.Tensor:
    """N×J×3 float32 ``[x, y, v]`` targets of N annotations: each one's keypoints in its category's channels,
    zeros (v = 0: not labelled) in the other channels and for annotations without keypoints."""
    annotations = list(annotations)
    out = torch.zeros(len(annotations), layout.num_joints, 3)
    for i, ann in enumerate(annotations):
        cat = layout.categories.get(ann["category_id"])
        if cat is not None and ann.get("keypoints") is not None:
            out[i, cat.channels] = torch.tensor(ann["keypoints"], dtype=torch.float32).reshape(-1, 3)
    return out


class KeypointCocoDetection(CocoDetection):
    """:class:`~densevision.data.coco.CocoDetection` whose targets also hold ``keypoints`` (N×J×3 float32, image
    pixels, :func:`stacked_keypoints`) in the file's :class:`KeypointLayout` (``layout``). The file needs at least
    one category with ``keypoints`` names; its keypoint annotations are checked when the data set is built."""

    def __init__(
        self,
        ann_file: str | os.PathLike,
        image_root: str | os.PathLike,
        transforms: Transform | None = None,
        *,
        include_crowd: bool = True,
        check_images: bool = False,
    ) -> None:
        super().__init__(ann_file, image_root, transforms, include_crowd=include_crowd, check_images=check_images)
        self.layout = KeypointLayout(self.dataset["categories"], self.ann_file)
        check_keypoint_annotations(self.dataset["annotations"], self.layout, self.ann_file)

    def load_target(self, image_id: int) -> dict[str, torch.Tensor]:
        target = super().load_target(image_id)
        anns = [a for a in self.coco.imgToAnns.get(image_id, []) if self.include_crowd or not a.get("iscrowd", 0)]
        target["keypoints"] = stacked_keypoints(anns, self.layout)
        return target
