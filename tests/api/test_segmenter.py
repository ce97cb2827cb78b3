"""``densevision.Segmenter``: the label map ``seg predict`` writes for the same image, whole and sliding-window."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

import densevision
from densevision.api import Segmenter
from densevision.cli import main
from densevision.data.images import read_image
from densevision.data.labelmaps import read_label_map
from densevision.errors import DenseVisionError
from densevision.segmentation import Segmenter as SegmenterNet


@pytest.mark.parametrize(("flags", "options"), [
    ([], {}),
    (["--mode", "slide", "--crop", "64", "48"], {"mode": "slide", "crop": (64, 48)}),
    (["--mode", "slide", "--crop", "64", "64", "--stride", "16", "16"],
     {"mode": "slide", "crop": (64, 64), "stride": (16, 16)}),
], ids=["whole", "slide", "slide-stride"])
def test_label_map_equals_seg_predict(checkpoints, synth, tmp_path, flags, options):
    assert main(["seg", "predict", "--checkpoint", str(checkpoints["segmenter"]), "--images", str(synth["folder"]),
                 "--out", str(tmp_path / "pred"), "--device", "cpu", "--no-progress", *flags]) == 0
    segmenter = Segmenter.from_checkpoint(checkpoints["segmenter"], device="cpu", **options)
    label = segmenter(synth["image"])
    assert label.shape == (96, 96) and label.dtype == np.int64
    assert np.array_equal(label, read_label_map(tmp_path / "pred" / "000001.png"))
    assert len(np.unique(label)) > 1


def test_every_input_type_gives_the_same_label_map(checkpoints, synth):
    segmenter = Segmenter.from_checkpoint(checkpoints["segmenter"], device="cpu", input_size=64)
    array = read_image(synth["image"])
    expected = segmenter(synth["image"])
    with Image.open(synth["image"]) as im:
        for image in (str(synth["image"]), im, array, torch.from_numpy(array).permute(2, 0, 1) / 255.0):
            assert np.array_equal(segmenter(image), expected)
    assert segmenter.classes[0] == "background"


def test_the_predictor_and_the_network_keep_their_names(checkpoints):
    segmenter = densevision.Segmenter.from_checkpoint(checkpoints["segmenter"], device="cpu")
    assert densevision.Segmenter is Segmenter and isinstance(segmenter.model, SegmenterNet)
    assert not issubclass(Segmenter, torch.nn.Module)


@pytest.mark.parametrize(("options", "message"), [
    ({"mode": "tiles"}, "mode must be 'whole' or 'slide'"),
    ({"mode": "slide"}, "mode='slide' needs crop=(H, W)"),
    ({"input_size": 0}, "input_size must be a positive number"),
])
def test_bad_options_are_one_line_errors(checkpoints, options, message):
    with pytest.raises(DenseVisionError, match=message.replace("(", r"\(").replace(")", r"\)")):
        Segmenter.from_checkpoint(checkpoints["segmenter"], device="cpu", **options)


def test_a_detector_checkpoint_is_not_a_segmenter(checkpoints):
    with pytest.raises(DenseVisionError, match="not a segmenter"):
        Segmenter.from_checkpoint(checkpoints["detector"], device="cpu")
