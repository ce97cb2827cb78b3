"""Segmenter inference at a rescaled input size and with test-time augmentation (scales, flip)."""

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


class _ConvBody(torch.nn.Module):
    """A one-level stride-1 body: one 3×3 convolution (any input size)."""

    out_channels, strides = [4], [1]

    def __init__(self, mirror_symmetric: bool) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        if mirror_symmetric:  # w[..., j] = w[..., 2 - j]: the convolution commutes with a left-right flip
            with torch.no_grad():
                self.conv.weight.copy_((self.conv.weight + self.conv.weight.flip(-1)) / 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        return [self.conv(x)]


class _PointwiseHead(torch.nn.Sequential):
    """ReLU and a 1×1 convolution to 3 classes on the body's only level."""

    def __init__(self) -> None:
        super().__init__(torch.nn.ReLU(), torch.nn.Conv2d(4, 3, 1))

    def forward(self, feats: list[torch.Tensor]) -> torch.Tensor:
        return super().forward(feats[0])


def _conv_segmenter(mirror_symmetric: bool):
    from densevision.segmentation.model import Segmenter

    torch.manual_seed(0)
    return Segmenter(_ConvBody(mirror_symmetric), _PointwiseHead()).eval()


def test_one_scale_without_flip_is_plain_inference():
    from densevision.segmentation.predict import image_logits, image_probabilities

    model = build_segmenter("hrnet_w18_small", "fpn", 4, **TINY).eval()
    image = torch.rand(3, 40, 56)
    logits = image_logits(model, image[None])
    torch.testing.assert_close(image_probabilities(model, image[None], scales=[1.0]), logits.softmax(1))
    assert predict_image(model, image, scales=[1.0]).equal(logits.argmax(1)[0])


def test_flip_of_a_flip_equivariant_model_changes_nothing():
    from densevision.segmentation.predict import image_probabilities

    image = torch.rand(1, 3, 20, 30)
    model = _conv_segmenter(mirror_symmetric=True)
    torch.testing.assert_close(model(image.flip(-1)).flip(-1), model(image))
    torch.testing.assert_close(image_probabilities(model, image, flip=True), image_probabilities(model, image))

    model = _conv_segmenter(mirror_symmetric=False)
    expected = (model(image).softmax(1) + model(image.flip(-1)).softmax(1).flip(-1)) / 2
    flipped = image_probabilities(model, image, flip=True)
    torch.testing.assert_close(flipped, expected)
    assert not torch.allclose(flipped, image_probabilities(model, image), atol=1e-4)


def test_scales_average_the_probabilities_of_each_run_at_the_image_size():
    from densevision.segmentation.predict import image_logits, image_probabilities

    model = _conv_segmenter(mirror_symmetric=False)
    image = torch.rand(1, 3, 32, 48)
    for mode in ("whole", "slide"):
        window = {"crop": (16, 16), "stride": (8, 8)} if mode == "slide" else {}
        half = image_logits(model, image, mode=mode, input_size=24, **window)  # 16×24, resized back
        full = image_logits(model, image, mode=mode, **window)
        assert half.shape == full.shape == (1, 3, 32, 48)
        got = image_probabilities(model, image, scales=[0.5, 1.0], mode=mode, **window)
        torch.testing.assert_close(got, (half.softmax(1) + full.softmax(1)) / 2)
        both = image_probabilities(model, image, scales=[0.5, 1.0], flip=True, mode=mode, **window)
        assert both.shape == (1, 3, 32, 48)
        torch.testing.assert_close(both.sum(1), torch.ones(1, 32, 48))
