"""Tiny architectures shared by the pose tests, and a hand-made COCO person keypoint file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from densevision.data.keypoints import COCO_PERSON_KEYPOINTS

TINY_POSE_HRNET = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": [1, 1, 1],
                   "num_blocks": [1, 1, 1]}
TINY_BACKBONE = {"width": 4, "stage1_planes": 8}

# A standing person facing the camera (its left on the image's right), every keypoint labelled (ears occluded),
# and a second one with only its head and shoulders labelled (5 keypoints).
STANDING = [(40, 12), (43, 10), (37, 10), (46, 12), (34, 12), (50, 30), (30, 30), (54, 45), (26, 45), (56, 58),
            (24, 58), (46, 65), (34, 65), (47, 90), (33, 90), (48, 115), (32, 115)]
STANDING_VISIBILITY = [2, 2, 2, 1, 1] + [2] * 12
HEAD_AND_SHOULDERS = {0: (80, 66), 1: (82, 64), 2: (78, 64), 5: (86, 76), 6: (74, 76)}


def write_person_fixture(root: Path) -> tuple[Path, Path]:
    """A 96×128 (W×H) image with two persons in COCO's 17-keypoint format, the category without ``kpt_sigmas``,
    ``flip_pairs`` or ``skeleton`` (COCO's are built in); returns (annotation json, image folder)."""
    images = root / "person_images"
    images.mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (128, 96, 3), dtype=np.uint8)).save(images / "people.png")
    standing = [v for (x, y), vis in zip(STANDING, STANDING_VISIBILITY, strict=True) for v in (x, y, vis)]
    partial = [v for i in range(17) for v in ((*HEAD_AND_SHOULDERS[i], 2) if i in HEAD_AND_SHOULDERS else (0, 0, 0))]
    data = {
        "images": [{"id": 1, "file_name": "people.png", "width": 96, "height": 128}],
        "categories": [{"id": 1, "name": "person", "supercategory": "person",
                        "keypoints": list(COCO_PERSON_KEYPOINTS)}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [20, 5, 40, 118], "area": 4720, "iscrowd": 0,
             "keypoints": standing, "num_keypoints": 17},
            {"id": 2, "image_id": 1, "category_id": 1, "bbox": [70, 60, 20, 40], "area": 800, "iscrowd": 0,
             "keypoints": partial, "num_keypoints": 5},
        ],
    }
    ann = root / "person_keypoints.json"
    ann.write_text(json.dumps(data))
    return ann, images
