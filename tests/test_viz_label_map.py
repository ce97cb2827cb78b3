"""Semantic label maps drawn over their images, with a legend of the classes present."""

from __future__ import annotations

import numpy as np
import pytest

from densevision.data.labelmaps import voc_palette
from densevision.viz import draw_label_map


def test_overlay_blends_palette_colours_and_lists_the_classes_present():
    image = np.full((20, 30, 3), 200, np.uint8)
    label = np.ones((20, 30), np.int64)
    label[5:10, 5:10] = 3
    label[0, 0] = 255
    out = draw_label_map(image, label, ["sky", "road", "car", "person"], alpha=0.5)
    assert out.dtype == np.uint8 and out.shape[0] >= 20 and out.shape[1] > 30
    palette = np.asarray(voc_palette()).reshape(-1, 3)
    assert out[7, 7].tolist() == np.round(0.5 * 200 + 0.5 * palette[3]).astype(int).tolist()
    assert out[15, 15].tolist() == np.round(0.5 * 200 + 0.5 * palette[1]).astype(int).tolist()
    assert out[0, 0].tolist() == [200, 200, 200]  # ignored pixels keep the image
    legend = out[:, 30:]
    for value in (1, 3):  # a swatch of each class present, none of the absent ones
        assert (legend == palette[value]).all(-1).sum() > 9
    assert not (legend == palette[2]).all(-1).any() and not (legend == palette[4]).all(-1).any()


def test_overlay_without_labelled_pixels_is_the_image_and_sizes_must_agree():
    image = np.random.default_rng(0).integers(0, 255, (8, 9, 3), dtype=np.uint8)
    out = draw_label_map(image, np.full((8, 9), 255), [])
    assert out.shape == (8, 9, 3) and np.array_equal(out, image)
    with pytest.raises(ValueError, match="differ in size"):
        draw_label_map(image, np.zeros((9, 8), np.int64))
