"""COCO keypoints for top-down pose estimation: keypoint layouts of any category, box crops, affine
augmentation and Gaussian heatmap targets.

Several categories with different keypoint sets share one network: their keypoints are stacked into one list of
channels (:class:`KeypointLayout`), each category owning a contiguous slice; a crop's targets are non-zero only
in its category's slice. The recipe follows the official HRNet pose code: the box is padded to the input aspect
ratio and enlarged ×1.25, targets are Gaussians (peak 1, σ = 2 at heatmap resolution) centred at the rounded
keypoint (or, as an option, at the exact keypoint: DARK's unbiased encoding), weighted by visibility; persons
in COCO's 17-keypoint layout also get the official half-body crops (upper or lower body only).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from densevision.data.coco import load_coco
from densevision.data.images import ImageRecord, load_image, record_from_entry
from densevision.errors import DataError

# COCO's person OKS sigmas (pycocotools' values / 10), in the order of COCO's 17 person keypoints.
COCO_PERSON_SIGMAS = tuple(v / 10 for v in (
    .26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89))
COCO_PERSON_KEYPOINTS = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle",
    "right_ankle",
)
# COCO's person skeleton (1-based keypoint pairs, as in COCO's person_keypoints files).
COCO_PERSON_SKELETON = (
    (16, 14), (14, 12), (17, 15), (15, 13), (12, 13), (6, 12), (7, 13), (6, 7), (6, 8), (7, 9), (8, 10), (9, 11),
    (2, 3), (1, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7),
)
BOX_SCALE = 1.25
# Half-body crops (COCO person layout): the first 11 keypoints (nose to wrists) are the upper body; a crop needs
# more than 8 labelled keypoints, and is the chosen half's extent padded to the input aspect ratio, ×1.5.
PERSON_UPPER_BODY = 11
HALF_BODY_MIN_JOINTS = 8
HALF_BODY_SCALE = 1.5


def flip_pairs_from_names(names: Sequence[str]) -> list[tuple[int, int]]:
    """0-based index pairs ``(left_x, right_x)`` of the names ``left_*`` / ``right_*`` (also ``l_*`` / ``r_*``)."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        for left, right in (("left_", "right_"), ("l_", "r_")):
            if name.startswith(left) and right + name[len(left):] in index:
                pairs.append((i, index[right + name[len(left):]]))
    return pairs


def category_sigmas(category: Mapping[str, Any]) -> list[float] | None:
    """OKS sigmas of a category: its ``kpt_sigmas`` entry, COCO's for the 17 COCO person keypoints, else None."""
    if category.get("kpt_sigmas") is not None:
        return [float(s) for s in category["kpt_sigmas"]]
    if tuple(category.get("keypoints") or ()) == COCO_PERSON_KEYPOINTS:
        return list(COCO_PERSON_SIGMAS)
    return None


def _pairs(category: Mapping[str, Any], key: str, source: str) -> list[tuple[int, int]] | None:
    """A category's 1-based keypoint pairs under ``key`` as 0-based pairs (None when absent)."""
    if category.get(key) is None:
        return None
    k = len(category["keypoints"])
    try:
        pairs = [(int(a) - 1, int(b) - 1) for a, b in category[key]]
    except (TypeError, ValueError):
        raise DataError(f"{source}: category {category['id']} has a {key} that is not a list of pairs") from None
    if any(not (0 <= i < k) for p in pairs for i in p):
        raise DataError(f"{source}: category {category['id']} has {key} outside 1..{k}")
    return pairs


@dataclass(frozen=True)
class KeypointCategory:
    """One category's keypoints: names, 0-based ``flip_pairs``, OKS ``sigmas`` (None when unknown), the
    ``offset`` of its first channel in the shared layout and the 0-based ``skeleton`` edges drawn between
    keypoints (None when the category has none: :meth:`edges` then joins consecutive keypoints)."""

    id: int
    name: str
    keypoints: tuple[str, ...]
    flip_pairs: tuple[tuple[int, int], ...]
    sigmas: tuple[float, ...] | None
    offset: int
    skeleton: tuple[tuple[int, int], ...] | None = None

    @property
    def channels(self) -> slice:
        return slice(self.offset, self.offset + len(self.keypoints))

    @property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """The 0-based keypoint pairs to draw: the ``skeleton``, else each keypoint to the next."""
        if self.skeleton is not None:
            return self.skeleton
        return tuple((i, i + 1) for i in range(len(self.keypoints) - 1))


class KeypointLayout:
    """The categories with keypoints of a COCO file, stacked into ``num_joints`` heatmap channels (category id
    order). ``flip_index`` maps every channel to its mirror channel."""

    def __init__(self, categories: Sequence[Mapping[str, Any]], source: str = "categories") -> None:
        self.categories: dict[int, KeypointCategory] = {}
        offset = 0
        for cat in sorted(categories, key=lambda c: c["id"]):
            names = tuple(cat.get("keypoints") or ())
            if not names:
                continue
            pairs = _pairs(cat, "flip_pairs", source)
            if pairs is None:
                pairs = flip_pairs_from_names(names)
            skeleton = _pairs(cat, "skeleton", source)
            if skeleton is None and names == COCO_PERSON_KEYPOINTS:
                skeleton = [(a - 1, b - 1) for a, b in COCO_PERSON_SKELETON]
            sigmas = category_sigmas(cat)
            if sigmas is not None and len(sigmas) != len(names):
                raise DataError(f"{source}: category {cat['id']} has {len(sigmas)} kpt_sigmas for {len(names)} "
                                "keypoints")
            self.categories[int(cat["id"])] = KeypointCategory(
                int(cat["id"]), str(cat.get("name", cat["id"])), names, tuple(pairs),
                None if sigmas is None else tuple(sigmas), offset, None if skeleton is None else tuple(skeleton))
            offset += len(names)
        if not self.categories:
            raise DataError(f"{source}: no category has 'keypoints' names")
        self.num_joints = offset
        flip = list(range(offset))
        for cat in self.categories.values():
            for a, b in cat.flip_pairs:
                flip[cat.offset + a], flip[cat.offset + b] = cat.offset + b, cat.offset + a
        self.flip_index = flip

    def to_meta(self) -> list[dict[str, Any]]:
        """The layout as plain category entries (kept in a checkpoint's model spec); ``KeypointLayout`` reads
        them back."""
        return [{"id": c.id, "name": c.name, "keypoints": list(c.keypoints),
                 "flip_pairs": [[a + 1, b + 1] for a, b in c.flip_pairs],
                 "kpt_sigmas": None if c.sigmas is None else list(c.sigmas),
                 "skeleton": None if c.skeleton is None else [[a + 1, b + 1] for a, b in c.skeleton]}
                for c in self.categories.values()]


# ------------------------------------------------------------------------------------------- geometry
def box_to_center_size(box: Sequence[float], aspect: float, scale: float = BOX_SCALE) -> tuple[np.ndarray, np.ndarray]:
    """COCO box ``[x, y, w, h]`` -> centre (x, y) and size (w, h) of the crop: padded to ``aspect`` (w / h of
    the network input), then enlarged by ``scale``."""
    x, y, w, h = (float(v) for v in box)
    w, h = max(w, 1.0), max(h, 1.0)
    if w > aspect * h:
        h = w / aspect
    else:
        w = h * aspect
    return np.array([x + float(box[2]) / 2, y + float(box[3]) / 2]), np.array([w, h]) * scale


def crop_transform(center: np.ndarray, size: np.ndarray, output_size: Sequence[int], rotation: float = 0.0,
                   inverse: bool = False) -> np.ndarray:
    """2×3 affine matrix mapping the rotated box (``center``, ``size`` w×h, ``rotation`` degrees
    counter-clockwise) onto an ``output_size`` (H, W) crop (``inverse``: crop -> image)."""
    out_h, out_w = output_size
    theta = math.radians(rotation)
    down = np.array([-math.sin(theta), math.cos(theta)]) * size[1] / 2  # image vector to the crop's bottom middle
    right = np.array([math.cos(theta), math.sin(theta)]) * size[0] / 2
    src = np.float32([center, center + down, center + right])
    dst = np.float32([[out_w / 2, out_h / 2], [out_w / 2, out_h], [out_w, out_h / 2]])
    return cv2.getAffineTransform(dst, src) if inverse else cv2.getAffineTransform(src, dst)


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """N×2 points through a 2×3 affine matrix."""
    return points @ matrix[:, :2].T + matrix[:, 2]


def upper_body_mask(category: KeypointCategory) -> np.ndarray | None:
    """Which of a category's keypoints are the upper body, for half-body crops: COCO's person layout only (nose,
    eyes, ears, shoulders, elbows, wrists); None for any other category, which gets no half-body crops."""
    if category.keypoints != COCO_PERSON_KEYPOINTS:
        return None
    return np.arange(len(category.keypoints)) < PERSON_UPPER_BODY


def half_body_crop(joints: np.ndarray, visible: np.ndarray, upper: np.ndarray, aspect: float,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray] | None:
    """The official half-body crop: centre (x, y) and size (w, h) around the labelled joints (K×2 ``joints``,
    ``visible`` K bool) of the upper body (``upper`` K bool) when a normal draw is below 0.5 and it has more
    than 2 of them, else of the lower body when it has more than 2, else of the upper body; their extent padded
    to ``aspect`` (w / h) and ×1.5, centred at their mean. None with fewer than 2 joints."""
    upper_joints, lower_joints = joints[visible & upper], joints[visible & ~upper]
    if rng.normal() < 0.5 and len(upper_joints) > 2:
        chosen = upper_joints
    else:
        chosen = lower_joints if len(lower_joints) > 2 else upper_joints
    if len(chosen) < 2:
        return None
    low, high = chosen.min(0), chosen.max(0)
    _, size = box_to_center_size([*low, *(high - low)], aspect, HALF_BODY_SCALE)
    return chosen.mean(0), size


def gaussian_targets(joints: np.ndarray, visible: np.ndarray, heatmap_size: Sequence[int],
                     sigma: float = 2.0, *, unbiased: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Heatmaps K×h×w (float32) with a Gaussian in a (6σ+1)² window around ``int(joint + 0.5)`` (joints K×2 in
    heatmap pixels) and weights K: ``visible`` (bool K), 0 when the window misses the map. The Gaussian peaks
    (value 1) at the rounded joint, as the official code does, or with ``unbiased`` at the joint's exact
    sub-pixel position (DARK's unbiased encoding, so that a sub-pixel decoder can recover it)."""
    h, w = heatmap_size
    k = len(joints)
    target = np.zeros((k, h, w), np.float32)
    weight = visible.astype(np.float32).copy()
    radius = int(3 * sigma)
    ax = np.arange(-radius, radius + 1, dtype=np.float32)
    for j in range(k):
        if weight[j] == 0:
            continue
        mx, my = int(joints[j, 0] + 0.5), int(joints[j, 1] + 0.5)
        x0, y0, x1, y1 = mx - radius, my - radius, mx + radius + 1, my + radius + 1
        if x0 >= w or y0 >= h or x1 <= 0 or y1 <= 0:
            weight[j] = 0
            continue
        dx, dy = (ax + mx - joints[j, 0], ax + my - joints[j, 1]) if unbiased else (ax, ax)
        g = np.exp(-(dx[None, :] ** 2 + dy[:, None] ** 2) / (2 * sigma**2))
        gx0, gy0 = max(0, -x0), max(0, -y0)
        gx1, gy1 = min(x1, w) - x0, min(y1, h) - y0
        target[j, max(0, y0):min(y1, h), max(0, x0):min(x1, w)] = g[gy0:gy1, gx0:gx1]
    return target, weight


# ------------------------------------------------------------------------------------------- dataset
@dataclass(frozen=True)
class Augment:
    """Random affine augmentation of a crop: a half-body crop with probability ``half_body`` (COCO person
    layout with more than 8 labelled keypoints: :func:`half_body_crop`; other categories never), rotation
    ±``rotation`` degrees (with probability ``rotation_prob``), scale 1 ± ``scale``, horizontal flip with
    probability ``flip``."""

    rotation: float = 45.0
    rotation_prob: float = 0.6
    scale: float = 0.35
    flip: float = 0.5
    half_body: float = 0.3


@dataclass(frozen=True)
class PoseInstance:
    """One box to estimate keypoints in: the image, the category, the box ``[x, y, w, h]``, the keypoints
    (K_cat×3, zeros when unknown), the score of the box and the annotation id (0 for detections)."""

    record: ImageRecord
    category_id: int
    box: tuple[float, float, float, float]
    keypoints: np.ndarray
    score: float = 1.0
    ann_id: int = 0


def load_keypoint_instances(
    ann: str | os.PathLike, images: str | os.PathLike, *, labelled_only: bool = True
) -> tuple[list[PoseInstance], KeypointLayout]:
    """The ground-truth instances of a COCO keypoint file with their boxes (crowd annotations skipped; with
    ``labelled_only`` also those without a labelled keypoint) and the file's :class:`KeypointLayout`."""
    data = load_coco(ann, images, required=("bbox",))
    layout = KeypointLayout(data.get("categories") or [], str(ann))
    records = {img["id"]: record_from_entry(img, images, str(ann)) for img in data["images"]}
    instances = []
    for a in data["annotations"]:
        cat = layout.categories.get(a["category_id"])
        if cat is None or a.get("iscrowd", 0):
            continue
        flat = a.get("keypoints")
        k = len(cat.keypoints)
        if flat is None:
            flat = [0] * (3 * k)
        if len(flat) != 3 * k:
            raise DataError(f"{ann}: annotation id {a['id']} has {len(flat)} keypoint values, category "
                            f"{cat.id} needs 3 x {k}")
        kpts = np.asarray(flat, np.float64).reshape(k, 3)
        if labelled_only and not (kpts[:, 2] > 0).any():
            continue
        instances.append(PoseInstance(records[a["image_id"]], cat.id, tuple(float(v) for v in a["bbox"]), kpts,
                                      1.0, int(a["id"])))
    return instances, layout


class TopDownDataset(Dataset):
    """``ds[i] -> (image, target, weight, index)``: the crop 3×H×W float32 in [0, 1], heatmaps K×h×w, weights
    K (zero outside the instance's category channels) and the instance index.

    ``input_size`` (H, W), ``heatmap_stride`` s (heatmaps ``ceil(H/s)×ceil(W/s)``), ``augment`` (None: none,
    as for evaluation), ``seed`` makes the augmentation of sample ``i`` at call ``n`` reproducible
    through the engine's seeded loader; ``unbiased``: targets peak at the exact joint (:func:`gaussian_targets`).
    ``image_loader`` reads an instance's record as H×W×3 uint8 RGB (default: its file, size checked).
    """

    def __init__(self, instances: Sequence[PoseInstance], layout: KeypointLayout, *, input_size: Sequence[int],
                 heatmap_stride: int = 4, sigma: float = 2.0, augment: Augment | None = None,
                 unbiased: bool = False, image_loader: Callable[[ImageRecord], np.ndarray] = load_image) -> None:
        self.instances = list(instances)
        self.layout = layout
        self.input_size = (int(input_size[0]), int(input_size[1]))
        self.heatmap_stride = heatmap_stride
        self.heatmap_size = tuple(-(-s // heatmap_stride) for s in self.input_size)
        self.sigma = sigma
        self.augment = augment
        self.unbiased = unbiased
        self.image_loader = image_loader

    def __len__(self) -> int:
        return len(self.instances)

    def crop_geometry(self, index: int, rng: np.random.Generator | None = None) -> tuple[np.ndarray, np.ndarray,
                                                                                          float, bool]:
        """Centre, size, rotation and flip of sample ``index`` (random only with ``augment`` and ``rng``; random
        numbers are drawn in the official order: half-body, scale, rotation, flip)."""
        inst = self.instances[index]
        aspect = self.input_size[1] / self.input_size[0]
        center, size = box_to_center_size(inst.box, aspect)
        aug = self.augment
        if aug is None or rng is None:
            return center, size, 0.0, False
        upper = upper_body_mask(self.layout.categories[inst.category_id])
        visible = inst.keypoints[:, 2] > 0
        if upper is not None and visible.sum() > HALF_BODY_MIN_JOINTS and rng.random() < aug.half_body:
            crop = half_body_crop(inst.keypoints[:, :2], visible, upper, aspect, rng)
            if crop is not None:
                center, size = crop
        size = size * float(np.clip(rng.normal() * aug.scale + 1, 1 - aug.scale, 1 + aug.scale))
        rotation = float(np.clip(rng.normal() * aug.rotation, -2 * aug.rotation, 2 * aug.rotation))
        rotation = rotation if rng.random() < aug.rotation_prob else 0.0
        return center, size, rotation, bool(rng.random() < aug.flip)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        inst = self.instances[index]
        rng = np.random.default_rng(torch.randint(0, 2**31, ()).item()) if self.augment is not None else None
        center, size, rotation, flip = self.crop_geometry(index, rng)
        image = self.image_loader(inst.record)
        matrix = crop_transform(center, size, self.input_size, rotation)
        crop = cv2.warpAffine(image, matrix, (self.input_size[1], self.input_size[0]), flags=cv2.INTER_LINEAR)
        cat = self.layout.categories[inst.category_id]
        joints = apply_affine(inst.keypoints[:, :2], matrix)
        visible = inst.keypoints[:, 2] > 0
        if flip:
            crop = crop[:, ::-1]
            joints[:, 0] = self.input_size[1] - 1 - joints[:, 0]
            order = list(range(len(joints)))
            for a, b in cat.flip_pairs:
                order[a], order[b] = b, a
            joints, visible = joints[order], visible[order]
        target = np.zeros((self.layout.num_joints, *self.heatmap_size), np.float32)
        weight = np.zeros(self.layout.num_joints, np.float32)
        target[cat.channels], weight[cat.channels] = gaussian_targets(
            joints / self.heatmap_stride, visible, self.heatmap_size, self.sigma, unbiased=self.unbiased)
        tensor = torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div_(255.0)
        return tensor, torch.from_numpy(target), torch.from_numpy(weight), index
