"""Overlays (mask tint, boxes, captions) and figure grids."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from densevision.viz import color_for, draw_coco_results, draw_instances, save_figure, save_png


def _scene() -> tuple[np.ndarray, torch.Tensor, torch.Tensor]:
    image = np.full((40, 60, 3), 100, np.uint8)
    masks = torch.zeros(2, 40, 60, dtype=torch.bool)
    masks[0, 5:15, 5:20] = True
    masks[1, 20:35, 30:55] = True
    boxes = torch.tensor([[5.0, 5.0, 20.0, 15.0], [30.0, 20.0, 55.0, 35.0]])
    return image, masks, boxes


def test_masks_are_tinted_with_their_colour_and_the_rest_untouched():
    image, masks, _ = _scene()
    out = draw_instances(image, masks=masks, color_keys=[3, 8], alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    expected = (0.5 * np.array(color_for(3)) + 0.5 * 100).round()
    assert np.abs(out[10, 10].astype(float) - expected).max() <= 1
    assert not np.array_equal(out[25, 40], out[10, 10])  # the other instance has another colour
    assert np.array_equal(out[38, 2], image[38, 2])
    assert np.array_equal(image, np.full((40, 60, 3), 100, np.uint8))  # input not modified


def test_boxes_and_captions_are_drawn_on_the_box_outline():
    image, masks, boxes = _scene()
    out = draw_instances(image, boxes=boxes, masks=masks, names=["star", "ring"], scores=[0.93, 0.5],
                         color_keys=[1, 2], alpha=0.0)
    assert tuple(out[35, 42]) == color_for(2)  # bottom edge of the second box
    assert np.array_equal(out[38, 2], image[38, 2])


def test_float_tensor_input_and_no_instances():
    image = torch.rand(3, 12, 16)
    out = draw_instances(image)
    assert out.shape == (12, 16, 3)
    assert np.abs(out.astype(float) - image.permute(1, 2, 0).numpy() * 255).max() <= 0.5
    with pytest.raises(ValueError, match="RGB image"):
        draw_instances(np.zeros((5, 5), np.uint8))


def test_draw_coco_results_uses_category_names_and_threshold():
    image, masks, _ = _scene()
    results = []
    for m, cat, score in zip(masks.numpy().astype(np.uint8), (4, 9), (0.9, 0.1), strict=True):
        rle = mask_utils.encode(np.asfortranarray(m))
        rle["counts"] = rle["counts"].decode()
        results.append({"image_id": 1, "category_id": cat, "score": score,
                        "bbox": mask_utils.toBbox(rle).tolist(), "segmentation": rle})
    out = draw_coco_results(image, results, {4: "star", 9: "ring"}, score_thr=0.5)
    assert not np.array_equal(out[10, 10], image[10, 10])
    assert np.array_equal(out[27, 40], image[27, 40])  # below the threshold: not drawn
    assert np.array_equal(draw_coco_results(image, []), image)


def test_save_png_and_figure(tmp_path):
    image, masks, boxes = _scene()
    overlay = draw_instances(image, boxes=boxes, masks=masks)
    save_png(tmp_path / "o.png", overlay)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "o.png")), overlay)
    save_figure(tmp_path / "fig.png", [("input", image), ("overlay", overlay), ("again", overlay)], ncols=2,
                panel_inches=1.0, dpi=50)
    with Image.open(tmp_path / "fig.png") as fig:
        assert fig.size == (100, 100)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fig.png", "o.png"]
    with pytest.raises(ValueError, match="at least one panel"):
        save_figure(tmp_path / "none.png", [])
