"""``densevision.Refiner``: in memory, the same refined masks and boxes as ``bpr refine`` on the same image and
detections, under the default rule and a changed one."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.api import Detector, Refinement, Refiner
from densevision.cli import main
from densevision.data.images import read_image
from densevision.data.masks import encode_masks
from densevision.errors import DenseVisionError
from densevision.refine.config import RefineRuleConfig

CHANGED = RefineRuleConfig(boxes="from-mask", min_area=0, margin=0.0)
CHANGED_FLAGS = ["--boxes", "from-mask", "--min-area", "0", "--margin", "0"]


@pytest.fixture(scope="module")
def coarse(checkpoints, synth, tmp_path_factory):
    """``detect predict`` results on the one-image folder (with their image list beside them) and the same
    detections in memory."""
    out = tmp_path_factory.mktemp("refiner") / "coarse.json"
    assert main(["detect", "predict", "--checkpoint", str(checkpoints["detector"]), "--images", str(synth["folder"]),
                 "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    return out, Detector.from_checkpoint(checkpoints["detector"], device="cpu")(synth["image"])


def _bpr_refine(checkpoints, synth, results, out, flags) -> list[dict]:
    assert main(["bpr", "refine", "--images", str(synth["folder"]), "--results", str(results), "--checkpoint",
                 str(checkpoints["refiner"]), "--out", str(out), "--device", "cpu", "--no-progress", *flags]) == 0
    return json.loads(out.read_text())


@pytest.mark.parametrize(("rule", "flags"), [(None, []), (CHANGED, CHANGED_FLAGS)], ids=["default", "changed"])
def test_refinement_equals_bpr_refine(checkpoints, synth, coarse, tmp_path, rule, flags):
    results, dets = coarse
    expected = _bpr_refine(checkpoints, synth, results, tmp_path / "refined.json", flags)
    refiner = Refiner.from_checkpoint(checkpoints["refiner"], device="cpu", rule=rule)
    refined = refiner(synth["image"], dets.masks, dets.boxes, dets.scores)
    assert isinstance(refined, Refinement) and len(refined) == len(expected) == len(dets)
    assert encode_masks(torch.from_numpy(refined.masks)) == [r["segmentation"] for r in expected]
    xywh = np.array([r["bbox"] for r in expected])
    assert np.allclose(refined.boxes, np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], rtol=0, atol=1e-4)
    changed = (refined.masks != dets.masks).any((1, 2))
    if rule is None:  # every coarse mask covers fewer than 48² pixels: the default rule leaves them alone
        assert not changed.any() and np.array_equal(refined.boxes, dets.boxes)
    else:
        assert changed.all()


def test_boxes_default_to_the_coarse_masks_boxes(checkpoints, synth, coarse):
    _, dets = coarse
    refiner = Refiner.from_checkpoint(checkpoints["refiner"], device="cpu")
    refined = refiner(synth["image"], dets.masks)
    ys, xs = np.nonzero(dets.masks[0])
    assert refined.boxes[0].tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]


def test_every_input_type_gives_the_same_masks(checkpoints, synth, coarse):
    _, dets = coarse
    refiner = Refiner.from_checkpoint(checkpoints["refiner"], device="cpu", rule=CHANGED)
    array = read_image(synth["image"])
    expected = refiner(synth["image"], dets.masks).masks
    with Image.open(synth["image"]) as im:
        images = [str(synth["image"]), im, array, torch.from_numpy(array).permute(2, 0, 1) / 255.0]
        for image in images:
            assert np.array_equal(refiner(image, dets.masks).masks, expected)
    assert np.array_equal(refiner(array, torch.from_numpy(dets.masks.astype(np.uint8))).masks, expected)


def test_no_masks_give_an_empty_refinement(checkpoints, synth):
    refined = Refiner.from_checkpoint(checkpoints["refiner"], device="cpu")(synth["image"], np.zeros((0, 96, 96), bool))
    assert len(refined) == 0 and refined.masks.shape == (0, 96, 96) and refined.boxes.shape == (0, 4)


@pytest.mark.parametrize(("masks", "boxes", "scores", "message"), [
    (np.zeros((1, 95, 96), bool), None, None, "masks must be N×96×96 (the image's size), got shape (1, 95, 96)"),
    (np.full((1, 96, 96), 2, np.uint8), None, None, "masks must be bool or 0/1 integers"),
    (np.zeros((1, 96, 96), bool), [[0, 0, 5]], None, "boxes must be an array of 1×4 finite numbers, got shape (1, 3)"),
    (np.zeros((1, 96, 96), bool), [[5, 0, 0, 5]], None, "x0 <= x1"),
    (np.zeros((1, 96, 96), bool), None, [0.5, 0.2], "scores must be 1 finite numbers (one per instance), got "
                                                     "shape (2,)"),
    (np.zeros((1, 96, 96), bool), None, [float("nan")], "scores must be 1 finite numbers"),
])
def test_bad_masks_boxes_scores_are_one_line_errors(checkpoints, synth, masks, boxes, scores, message):
    refiner = Refiner.from_checkpoint(checkpoints["refiner"], device="cpu")
    with pytest.raises(DenseVisionError) as info:
        refiner(synth["image"], masks, boxes, scores)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_bad_rule_is_refused(checkpoints):
    with pytest.raises(DenseVisionError, match="refinement margin must be in"):
        Refiner.from_checkpoint(checkpoints["refiner"], device="cpu", rule=RefineRuleConfig(margin=0.7))
