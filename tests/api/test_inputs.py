"""The one image reader of the one-image entries: every input type gives the array a file read gives."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.api import as_image_array
from densevision.api.inputs import as_boxes, as_masks, as_scores
from densevision.data.images import read_image
from densevision.errors import DenseVisionError


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "I;16"])
def test_a_pil_image_reads_as_its_file(tmp_path, mode):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        im = Image.fromarray(rng.integers(0, 65535, (9, 7), dtype=np.uint16))
    else:
        im = Image.fromarray(rng.integers(0, 255, (9, 7, 3), dtype=np.uint8)).convert(mode)
    im.save(tmp_path / "im.png")
    with Image.open(tmp_path / "im.png") as opened:
        assert opened.mode == mode
        from_pil = as_image_array(opened)
    from_file = as_image_array(tmp_path / "im.png")
    assert from_pil.shape == (9, 7, 3) and from_pil.dtype == np.uint8
    assert np.array_equal(from_pil, from_file) and np.array_equal(from_file, read_image(tmp_path / "im.png"))


def test_a_uint8_tensor_over_255_round_trips_and_inputs_are_not_modified():
    array = np.random.default_rng(1).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    tensor = torch.from_numpy(array).permute(2, 0, 1).double() / 255
    assert np.array_equal(as_image_array(tensor), array)
    converted = as_image_array(array)
    converted[:] = 0
    assert array.any()
    strided = np.ascontiguousarray(array.transpose(1, 0, 2)).transpose(1, 0, 2)
    assert as_image_array(strided).flags.c_contiguous


@pytest.mark.parametrize(("image", "message"), [
    (np.zeros((0, 4, 3), np.uint8), "image array must be H×W×3 uint8 RGB, got shape (0, 4, 3)"),
    (np.zeros((4, 4, 4), np.uint8), "image array must be H×W×3 uint8 RGB, got shape (4, 4, 4)"),
    (torch.zeros(3, 4, 4, dtype=torch.uint8), "image tensor must be 3×H×W float in [0, 1]"),
    (torch.full((3, 4, 4), float("nan")), "image tensor values must be finite and in [0, 1]"),
    (torch.full((3, 4, 4), -0.1), "image tensor values must be finite and in [0, 1]"),
    (42, "not int"),
])
def test_bad_images_name_what_is_expected(image, message):
    with pytest.raises(DenseVisionError) as info:
        as_image_array(image)
    assert message in str(info.value) and "\n" not in str(info.value)


def test_missing_and_unreadable_files_are_one_line_errors(tmp_path):
    with pytest.raises(DenseVisionError, match=f"image file {tmp_path / 'none.png'} not found"):
        as_image_array(tmp_path / "none.png")
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DenseVisionError, match="is unreadable"):
        as_image_array(str(tmp_path / "bad.png"))


def test_boxes_scores_masks():
    assert as_boxes([[1, 2, 3, 4]]).dtype == np.float64
    assert as_boxes(torch.zeros(0, 4), 0).shape == (0, 4)
    assert as_scores(torch.tensor([0.5]), 1).tolist() == [0.5]
    assert as_masks(torch.ones(2, 3, 4, dtype=torch.uint8), 3, 4).dtype == np.bool_
    with pytest.raises(DenseVisionError, match="boxes must be an array of 2×4 finite numbers"):
        as_boxes([[0, 0, 1, 1]], 2)
    with pytest.raises(DenseVisionError, match="boxes must be an array of N×4 finite numbers"):
        as_boxes([["a", 0, 1, 1]])
    with pytest.raises(DenseVisionError, match="masks must be an N×3×4 array"):
        as_masks([np.zeros((3, 4)), np.zeros((3, 5))], 3, 4)
    with pytest.raises(DenseVisionError, match="masks must be bool or 0/1 integers, got dtype float32"):
        as_masks(np.zeros((1, 3, 4), np.float32), 3, 4)


def test_top_level_names_are_the_api_classes_and_load_lazily():
    code = ("import sys, densevision; assert 'torch' not in sys.modules; "
            "assert {'Detector', 'Refiner', 'Segmenter', 'PoseEstimator'} <= set(dir(densevision)); "
            "from densevision.api.pose import PoseEstimator; assert densevision.PoseEstimator is PoseEstimator; "
            "import densevision.api.detector as d; assert densevision.Detector is d.Detector")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[2])
