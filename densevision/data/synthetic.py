"""The embedded synthetic instance-segmentation data set (the project's default data).

Five shape categories mixing sharp corners, thin parts, curves and holes (triangle, square, star, ellipse, ring)
on textured, noisy backgrounds, with occlusion: each mask holds only the visible part and fully hidden instances
are dropped. At 512×512, a detector run at a lower resolution (and Mask R-CNN's 28×28 mask head) misplaces these
boundaries by several pixels, which is what boundary refinement corrects. Same seed, same bytes.

Every instance also carries COCO keypoints (triangle vertices, square corners, star tips, the ends of an
ellipse's or ring's axes) with visibility flags; they are computed from the same random draws, so images, masks
and boxes are the bytes they were before keypoints existed. The same scenes as semantic label maps (``labels``):
0 = background, c = category id c, 255 (ignore) on the pixels of shapes with fewer than 16 visible pixels, which
the image shows but the annotations leave out.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from tqdm import tqdm

from densevision.data.labelmaps import IGNORE_INDEX, write_classes, write_label_map
from densevision.errors import DenseVisionError
from densevision.io import atomic_open, write_json

CATEGORIES = [
    {"id": 1, "name": "triangle", "supercategory": "shape"},
    {"id": 2, "name": "square", "supercategory": "shape"},
    {"id": 3, "name": "star", "supercategory": "shape"},
    {"id": 4, "name": "ellipse", "supercategory": "shape"},
    {"id": 5, "name": "ring", "supercategory": "shape"},
]
CLASSES = ["background", *(c["name"] for c in CATEGORIES)]  # semantic classes: index = category id
SPLITS = ("train", "val")
# OKS sigma of every synthetic keypoint: as strict as COCO's eyes, fixed so that keypoint AP keeps its meaning.
KPT_SIGMA = 0.025
_KEYPOINTS = {1: ("vertex", 3), 2: ("corner", 4), 3: ("tip", 5), 4: ("axis_end", 4), 5: ("axis_end", 4)}
_SHIFT = 4  # cv2 fixed-point bits: shapes are drawn with sub-pixel precision
_MIN_VISIBLE_PIXELS = 16


def _fixed(points: np.ndarray) -> np.ndarray:
    return np.round(points * (1 << _SHIFT)).astype(np.int32)


def _polygon_mask(size: int, points: np.ndarray) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.fillPoly(mask, [_fixed(points)], 1, lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def _ellipse_mask(size: int, centre: np.ndarray, axes: np.ndarray, angle: float) -> np.ndarray:
    mask = np.zeros((size, size), np.uint8)
    cv2.ellipse(mask, tuple(_fixed(centre).tolist()), tuple(_fixed(axes).tolist()), angle, 0, 360, 1, -1,
                lineType=cv2.LINE_8, shift=_SHIFT)
    return mask


def _regular_points(centre: np.ndarray, radii: np.ndarray, angle0: float) -> np.ndarray:
    angles = angle0 + np.arange(len(radii)) * 2 * np.pi / len(radii)
    return centre + np.stack([np.cos(angles), np.sin(angles)], 1) * radii[:, None]


def _clockwise_from_top(points: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """``points`` (K×2) ordered clockwise on screen from 12 o'clock: the shapes are drawn at random rotations,
    and this order gives every keypoint a name that the image determines."""
    d = points - centre
    clockwise_from_up = np.mod(np.arctan2(d[:, 0], -d[:, 1]), 2 * np.pi)
    return points[np.argsort(clockwise_from_up, kind="stable")]


def shape_with_keypoints(category_id: int, size: int, centre: np.ndarray, diameter: float,
                         rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Binary H×W mask of one shape of ``category_id`` with the given centre (x, y) and outer diameter, and its
    keypoints (K×2 x, y; see :func:`keypoint_categories`) in the category's order."""
    r = diameter / 2
    angle0 = rng.uniform(0, 2 * np.pi)
    if category_id == 1:  # triangle: uneven angles give sharp corners
        angles = angle0 + np.sort(rng.uniform(0, 2 * np.pi, 3))
        angles[1] = max(angles[1], angles[0] + 0.6)
        angles[2] = min(max(angles[2], angles[1] + 0.6), angles[0] + 2 * np.pi - 0.6)
        pts = centre + np.stack([np.cos(angles), np.sin(angles)], 1) * r
        return _polygon_mask(size, pts), _clockwise_from_top(pts, centre)
    if category_id == 2:  # square
        pts = _regular_points(centre, np.full(4, r), angle0)
        return _polygon_mask(size, pts), _clockwise_from_top(pts, centre)
    if category_id == 3:  # five-pointed star: thin spikes
        radii = np.tile([r, r * rng.uniform(0.35, 0.5)], 5)
        pts = _regular_points(centre, radii, angle0)
        return _polygon_mask(size, pts), _clockwise_from_top(pts[0::2], centre)
    axes = np.array([r, r * rng.uniform(0.5, 1.0)])
    outer = _ellipse_mask(size, centre, axes, np.degrees(angle0))
    ends = _regular_points(centre, np.tile(axes, 2), angle0)  # the four ends of the two axes
    if category_id == 4:  # ellipse
        return outer, _clockwise_from_top(ends, centre)
    inner = _ellipse_mask(size, centre, axes * rng.uniform(0.45, 0.65), np.degrees(angle0))
    return outer & (1 - inner), _clockwise_from_top(ends, centre)  # ring with a hole


def draw_shape(category_id: int, size: int, centre: np.ndarray, diameter: float,
               rng: np.random.Generator) -> np.ndarray:
    """Binary H×W mask of one shape of ``category_id`` with the given centre (x, y) and outer diameter."""
    return shape_with_keypoints(category_id, size, centre, diameter, rng)[0]


def _background(size: int, rng: np.random.Generator) -> np.ndarray:
    """Gradient between two colours, sinusoidal stripes and blotchy noise; float32 H×W×3 in 0–255."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    theta = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(theta) * xx + np.sin(theta) * yy)[..., None]
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    img = c0 * (1 - ramp) + c1 * ramp
    phi = rng.uniform(0, 2 * np.pi)
    freq = rng.uniform(4, 24)
    stripes = np.sin(2 * np.pi * freq * (np.cos(phi) * xx + np.sin(phi) * yy))[..., None]
    img = img + stripes * rng.uniform(5, 30, 3)
    blotches = cv2.resize(rng.normal(0, 1, (size // 32, size // 32, 3)).astype(np.float32), (size, size),
                          interpolation=cv2.INTER_CUBIC)
    return (img + blotches * rng.uniform(5, 20)).astype(np.float32)


def _texture(size: int, rng: np.random.Generator) -> np.ndarray:
    """An object's fill: a base colour, a soft gradient and fine noise; float32 H×W×3."""
    base = rng.uniform(20, 235, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    grad = (rng.uniform(-1, 1) * xx + rng.uniform(-1, 1) * yy)[..., None] * rng.uniform(10, 40)
    return (base + grad + rng.normal(0, rng.uniform(2, 12), (size, size, 3))).astype(np.float32)


def render_scene(
    size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]], np.ndarray]:
    """Render one image: returns H×W×3 uint8 RGB, the annotated instances as ``(category_id, visible mask,
    K×3 keypoints [x, y, v])`` (v = 2 visible, 1 covered by a later shape, 0 outside the image with x = y = 0;
    fully hidden instances and those with fewer than 16 visible pixels dropped) and the H×W bool mask of the
    visible pixels of the dropped, nearly hidden ones (shown in the image, but not annotated)."""
    image = _background(size, rng)
    instances: list[tuple[int, np.ndarray, np.ndarray]] = []
    for _ in range(int(rng.integers(3, 9))):
        cat = int(rng.integers(1, len(CATEGORIES) + 1))
        diameter = size * float(np.exp(rng.uniform(np.log(0.05), np.log(0.6))))
        centre = rng.uniform(diameter / 4, size - diameter / 4, 2)
        mask, points = shape_with_keypoints(cat, size, centre, diameter, rng)
        if not mask.any():
            continue
        on = mask.astype(bool)
        image[on] = _texture(size, rng)[on]
        for _, earlier, keypoints in instances:
            earlier[on] = 0
            _mark_occluded(keypoints, on)
        instances.append((cat, mask, _keypoint_triplets(points, size)))
    image = cv2.GaussianBlur(image, (3, 3), 0.6)
    image += rng.normal(0, rng.uniform(2, 8), image.shape).astype(np.float32)
    visible = [(c, m, k) for c, m, k in instances if int(m.sum()) >= _MIN_VISIBLE_PIXELS]
    unannotated = np.zeros((size, size), bool)
    for _, m, _ in instances:
        if 0 < int(m.sum()) < _MIN_VISIBLE_PIXELS:
            unannotated |= m.astype(bool)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), visible, unannotated


def render_image_with_keypoints(
    size: int, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[int, np.ndarray, np.ndarray]]]:
    """:func:`render_scene` without the unannotated pixels: the image and ``(category_id, mask, keypoints)``."""
    image, visible, _ = render_scene(size, rng)
    return image, visible


def render_image(size: int, rng: np.random.Generator) -> tuple[np.ndarray, list[tuple[int, np.ndarray]]]:
    """Render one image: returns H×W×3 uint8 RGB and ``(category_id, visible mask)`` pairs, fully hidden or
    nearly hidden instances dropped."""
    image, visible, _ = render_scene(size, rng)
    return image, [(cat, mask) for cat, mask, _ in visible]


def semantic_label(size: int, instances: list[tuple], unannotated: np.ndarray) -> np.ndarray:
    """The scene's H×W uint8 label map: 0 = background, c = category id c on each visible instance mask
    (``instances``: ``(category_id, mask, ...)``), ``IGNORE_INDEX`` (255) on the pixels of shapes too small to
    annotate (neither background nor a labelled object)."""
    label = np.zeros((size, size), np.uint8)
    for cat, mask, *_ in instances:
        label[mask > 0] = cat
    label[unannotated] = IGNORE_INDEX
    return label


def _keypoint_triplets(points: np.ndarray, size: int) -> np.ndarray:
    """K×2 points -> K×3 ``[x, y, v]``: v = 2 inside the image, else ``[0, 0, 0]`` (COCO's "not labelled")."""
    inside = ((points >= 0) & (points < size)).all(1)
    out = np.zeros((len(points), 3), np.float64)
    out[inside, :2] = points[inside]
    out[inside, 2] = 2
    return out


def _mark_occluded(keypoints: np.ndarray, cover: np.ndarray) -> None:
    """Visible keypoints (v = 2) whose pixel a later shape covers become occluded (v = 1)."""
    for k in np.flatnonzero(keypoints[:, 2] == 2):
        x, y = (int(v) for v in keypoints[k, :2])
        if cover[y, x]:
            keypoints[k, 2] = 1


def _annotation(ann_id: int, image_id: int, category_id: int, mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask))
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": category_id,
        "segmentation": {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")},
        "area": int(mask.sum()),
        "bbox": [float(v) for v in mask_utils.toBbox(rle)],
        "iscrowd": 0,
    }


def keypoint_categories() -> list[dict]:
    """:data:`CATEGORIES` with COCO keypoint fields. ``keypoints``: triangle vertices, square corners, star tips,
    the four ends of an ellipse's or ring's axes, named ``<part>_<i>`` clockwise on screen from 12 o'clock;
    ``skeleton``: the outline (1-based, as COCO); ``kpt_sigmas``: :data:`KPT_SIGMA` each; ``flip_pairs``
    (1-based): a horizontal flip reverses the clockwise order, so keypoint i becomes keypoint K + 1 - i."""
    out = []
    for cat in CATEGORIES:
        part, n = _KEYPOINTS[cat["id"]]
        out.append({
            **cat,
            "keypoints": [f"{part}_{i}" for i in range(1, n + 1)],
            "skeleton": [[i, i % n + 1] for i in range(1, n + 1)],
            "kpt_sigmas": [KPT_SIGMA] * n,
            "flip_pairs": [[i, n + 1 - i] for i in range(1, n // 2 + 1)],
        })
    return out


def keypoint_fields(keypoints: np.ndarray) -> dict:
    """The COCO annotation fields of K×3 ``[x, y, v]`` keypoints: ``keypoints`` (flat, 2 decimals) and
    ``num_keypoints`` (labelled ones, v > 0)."""
    return {"keypoints": [round(float(v), 2) if i % 3 < 2 else int(v) for i, v in enumerate(keypoints.ravel())],
            "num_keypoints": int((keypoints[:, 2] > 0).sum())}


def _write_png(path: Path, image_rgb: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_open(path, "wb") as f:
        f.write(buf.tobytes())


def generate_split(out_dir: str | os.PathLike, split: str, count: int, *, size: int = 512, seed: int = 0,
                   labels: bool = False, progress: bool = True) -> Path:
    """Write ``count`` images to ``out_dir/split/`` and ``out_dir/annotations/instances_{split}.json``
    (instances with COCO keypoints: :func:`keypoint_categories`, :func:`keypoint_fields`); with ``labels`` also
    the semantic label maps ``out_dir/labels/{split}/<stem>.png`` (:func:`semantic_label`, palette PNGs of class
    indices) and ``out_dir/classes.json``.

    Image ``i`` of a split depends only on ``(seed, split, i)`` (the same bytes with or without ``labels``);
    returns the json path.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if size < 64:
        raise ValueError(f"size must be at least 64, got {size}")
    out_dir = Path(out_dir)
    images, annotations = [], []
    for i in tqdm(range(count), desc=f"synth {split}", disable=not progress, unit="img"):
        rng = np.random.default_rng([seed, SPLITS.index(split), i])
        image, instances, unannotated = render_scene(size, rng)
        image_id = i + 1
        file_name = f"{image_id:06d}.png"
        _write_png(out_dir / split / file_name, image)
        if labels:
            write_label_map(out_dir / "labels" / split / f"{image_id:06d}.png",
                            semantic_label(size, instances, unannotated))
        images.append({"id": image_id, "file_name": file_name, "height": size, "width": size})
        for cat, mask, keypoints in instances:
            annotations.append({**_annotation(len(annotations) + 1, image_id, cat, mask), **keypoint_fields(keypoints)})
    ann_path = out_dir / "annotations" / f"instances_{split}.json"
    write_json(ann_path, {
        "info": {"description": "densevision synthetic shapes", "seed": seed, "split": split, "size": size},
        "images": images,
        "annotations": annotations,
        "categories": keypoint_categories(),
    }, indent=None)
    if labels:
        write_classes(out_dir / "classes.json", CLASSES)
    return ann_path


def existing_outputs(out_dir: str | os.PathLike, splits: Sequence[str]) -> list[str]:
    """What writing ``splits`` with label maps into ``out_dir`` would overwrite: their annotation files, their
    image and label folders where those hold files, and ``classes.json`` (paths relative to ``out_dir``)."""
    out_dir = Path(out_dir)
    found = [f"annotations/instances_{s}.json" for s in splits
             if (out_dir / "annotations" / f"instances_{s}.json").exists()]
    for folder in [*splits, *(f"labels/{s}" for s in splits)]:
        if (out_dir / folder).is_dir() and any((out_dir / folder).iterdir()):
            found.append(f"{folder}/")
    if splits and (out_dir / "classes.json").exists():
        found.append("classes.json")
    return found


def generate(out_dir: str | os.PathLike, *, train: int = 200, val: int = 50, size: int = 512, seed: int = 0,
             overwrite: bool = False, progress: bool = True) -> dict[str, Path]:
    """Write the train and val splits with their semantic label maps; returns ``{split: annotation json path}``
    (splits with 0 images skipped).

    A data set already in ``out_dir`` (:func:`existing_outputs`) is refused unless ``overwrite``, which writes
    over its files (images beyond the new counts stay, unlisted).
    """
    counts = {s: n for s, n in {"train": train, "val": val}.items() if n > 0}
    found = existing_outputs(out_dir, list(counts))
    if found and not overwrite:
        raise DenseVisionError(f"{out_dir} already holds a data set ({', '.join(found)}); choose another folder "
                               "or pass --overwrite to write over it")
    return {s: generate_split(out_dir, s, n, size=size, seed=seed, labels=True, progress=progress)
            for s, n in counts.items()}
