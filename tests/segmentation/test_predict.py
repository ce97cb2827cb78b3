"""Segmenter inference at a rescaled input size."""

from __future__ import annotations

import torch

from densevision.segmentation.model import build_segmenter
from densevision.segmentation.predict import input_shape, predict_image

TINY = {"channels": 16, "fpn_channels": 16, "backbone_kwargs": {"width": 8}}


def test_input_shape_keeps_the_aspect():
    assert input_shape(512, 512, None) == (512, 512)
    assert input_shape(512, 512, 256) == (256, 256)
    assert input_shape(300, 600, 200) == (100, 200)
    assert input_shape(3, 600, 100) == (1, 100)


def test_rescaled_prediction_has_the_image_size():
    torch.manual_seed(0)
    model = build_segmenter("hrnet_w18_small", "fpn", 4, **TINY).eval()
    image = torch.rand(3, 70, 90)
    full = predict_image(model, image)
    assert predict_image(model, image, input_size=90).equal(full)
    small = predict_image(model, image, input_size=45)
    assert small.shape == (70, 90) and small.dtype == torch.int64
    logits = torch.nn.functional.interpolate(image[None], size=(35, 45), mode="bilinear", align_corners=False,
                                             antialias=True)
    expected = torch.nn.functional.interpolate(model(logits), size=(70, 90), mode="bilinear",
                                               align_corners=False).argmax(1)[0]
    assert small.equal(expected)
