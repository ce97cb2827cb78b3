"""Shared BPR test data: a small synthetic data set, coarse results made from its ground truth, stub nets."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch import nn

from densevision.data.jsonio import read_json
from densevision.data.masks import annotation_to_mask
from densevision.data.synthetic import generate


def encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": [int(v) for v in rle["size"]], "counts": rle["counts"].decode("ascii")}


def coarse_results(ann_path: Path, *, dilate: int = 1) -> list[dict]:
    """Each ground-truth mask dilated by ``dilate`` pixels, as a detector's RLE result."""
    data = read_json(ann_path)
    sizes = {img["id"]: (img["height"], img["width"]) for img in data["images"]}
    kernel = np.ones((2 * dilate + 1, 2 * dilate + 1), np.uint8)
    results = []
    for ann in data["annotations"]:
        mask = cv2.dilate(annotation_to_mask(ann["segmentation"], *sizes[ann["image_id"]]), kernel)
        rle = encode(mask)
        results.append({"image_id": ann["image_id"], "category_id": ann["category_id"],
                        "score": 0.5 + ann["id"] / 1000, "segmentation": rle,
                        "bbox": [float(v) for v in mask_utils.toBbox(rle)]})
    return results


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> dict[str, Path]:
    """Three training and two validation images of 96×96, with coarse results (ground truth dilated by 1 px)
    written to ``root/coarse_{split}.json``."""
    root = tmp_path_factory.mktemp("bpr_synth")
    paths = generate(root, train=3, val=2, size=96, seed=3, progress=False)
    for split, ann in paths.items():
        (root / f"coarse_{split}.json").write_text(json.dumps(coarse_results(ann)))
    return {"root": root, **paths}


@pytest.fixture(scope="session")
def rle_of():
    """``rle_of(mask) -> compressed RLE dict`` with a str ``counts``."""
    return encode


class StubNet(nn.Module):
    """A stand-in for the network with a fixed rule ``predict(image, mask) -> B×P×P``."""

    def __init__(self, rule, patch_size: int = 16) -> None:
        super().__init__()
        self.rule = rule
        self.patch_size = patch_size
        self.calls: list[int] = []

    def predict(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        self.calls.append(len(image))
        return self.rule(image, mask).float()


@pytest.fixture(scope="session")
def stub_net():
    """The :class:`StubNet` class: ``stub_net(rule, patch_size=16)``."""
    return StubNet
