"""Keypoints of the synthetic shapes: added fields only (images, masks and boxes unchanged), named in a
rotation-independent order, with COCO visibility flags and OKS sigmas."""

from __future__ import annotations

import hashlib
import json

import numpy as np

from densevision.data.keypoints import KeypointLayout
from densevision.data.synthetic import KPT_SIGMA, generate, keypoint_categories, render_image_with_keypoints

# sha256 of images, instance annotations and categories as written before keypoints existed (size 96, seed 7).
INSTANCES_DIGEST = "39b705ba92c5ca413e0f41a066b553cfe8d0e0aca60a7e1856719e5913707fd7"
_KEYPOINT_KEYS = ("keypoints", "num_keypoints")
_CATEGORY_KEYS = ("id", "name", "supercategory")


def test_images_and_instances_unchanged_by_keypoints(tmp_path) -> None:
    generate(tmp_path, train=2, val=1, size=96, seed=7, progress=False)
    h = hashlib.sha256()
    for split in ("train", "val"):
        data = json.loads((tmp_path / f"annotations/instances_{split}.json").read_text())
        assert all(set(_KEYPOINT_KEYS) <= set(a) for a in data["annotations"])
        anns = [{k: v for k, v in a.items() if k not in _KEYPOINT_KEYS} for a in data["annotations"]]
        cats = [{k: c[k] for k in _CATEGORY_KEYS} for c in data["categories"]]
        h.update(json.dumps([data["images"], anns, cats], sort_keys=True).encode())
        for png in sorted((tmp_path / split).glob("*.png")):
            h.update(png.read_bytes())
    assert h.hexdigest() == INSTANCES_DIGEST


def test_keypoint_categories() -> None:
    cats = keypoint_categories()
    assert [len(c["keypoints"]) for c in cats] == [3, 4, 5, 4, 4]
    assert all(c["kpt_sigmas"] == [KPT_SIGMA] * len(c["keypoints"]) for c in cats)
    assert cats[2]["flip_pairs"] == [[1, 5], [2, 4]] and cats[0]["skeleton"] == [[1, 2], [2, 3], [3, 1]]
    assert KeypointLayout(cats).num_joints == 20


def test_keypoints_sit_on_the_shapes_clockwise_from_top() -> None:
    seen_flags = set()
    for i in range(12):
        _, instances = render_image_with_keypoints(160, np.random.default_rng([1, 0, i]))
        for cat, mask, kpts in instances:
            seen_flags |= set(kpts[:, 2].astype(int).tolist())
            labelled = kpts[kpts[:, 2] > 0]
            assert labelled.shape[0] and ((labelled[:, :2] >= 0) & (labelled[:, :2] < 160)).all()
            ys, xs = np.nonzero(mask)
            shown = kpts[kpts[:, 2] == 2]
            if len(shown):
                assert np.hypot(xs[:, None] - shown[:, 0], ys[:, None] - shown[:, 1]).min(0).max() < 4
            if cat > 1 and (kpts[:, 2] > 0).all():  # symmetric shapes: the keypoints' mean is the centre
                d = kpts[:, :2] - kpts[:, :2].mean(0)
                angles = np.mod(np.arctan2(d[:, 0], -d[:, 1]), 2 * np.pi)
                assert (np.diff(angles) > 0).all()
    assert {1, 2} <= seen_flags
