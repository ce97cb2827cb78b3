"""``densevision.Segmenter``: a trained semantic segmenter as a function of one image.

Two classes share the name on purpose, one per level: ``densevision.segmentation.Segmenter`` is the network (an
``nn.Module``: B×3×H×W in [0, 1] -> B×K×H×W logits) and ``densevision.Segmenter`` (this module's class) is the
predictor around it (one image -> an H×W label map), holding the network as ``.model``.
``Segmenter.from_checkpoint(path)(image)`` equals the PNG ``densevision seg predict`` writes for that image.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch

from densevision.api.inputs import ImageInput, as_image_array
from densevision.data.labelmaps import image_tensor
from densevision.engine.device import resolve_device
from densevision.errors import DenseVisionError
from densevision.segmentation import model as segmentation_model
from densevision.segmentation.predict import predict_image, slide_stride


class Segmenter:
    """A trained semantic segmenter that maps one image to its H×W label map of class indices.

    Build it with :meth:`from_checkpoint`; ``segmenter(image)`` takes a path, a PIL image, an H×W×3 uint8 RGB
    array or a 3×H×W float tensor in [0, 1].

    Args:
        model: the network (:class:`densevision.segmentation.Segmenter`), on the device it runs on.
        mode: ``"whole"`` (one pass over the image) or ``"slide"`` (overlapping ``crop`` windows, logits
            averaged).
        crop: window (H, W) of ``mode="slide"``.
        stride: window step (H, W) of ``mode="slide"`` (default: 2/3 of ``crop``, as ``seg predict``).
        input_size: run the image with its longer side rescaled to this many pixels (None: its own size); the
            label map always has the image's size.
    """

    def __init__(self, model: segmentation_model.Segmenter, *, mode: Literal["whole", "slide"] = "whole",
                 crop: Sequence[int] | None = None, stride: Sequence[int] | None = None,
                 input_size: int | None = None) -> None:
        if mode not in ("whole", "slide"):
            raise DenseVisionError(f"mode must be 'whole' or 'slide', got {mode!r}")
        if mode == "slide" and crop is None:
            raise DenseVisionError("mode='slide' needs crop=(H, W)")
        if input_size is not None and input_size < 1:
            raise DenseVisionError(f"input_size must be a positive number of pixels, got {input_size}")
        self.model = model.eval()
        self.mode = mode
        self.crop = None if crop is None else [int(v) for v in crop]
        self.stride = slide_stride(self.crop, stride) if mode == "slide" else stride
        self.input_size = input_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        mode: Literal["whole", "slide"] = "whole",
        crop: Sequence[int] | None = None,
        stride: Sequence[int] | None = None,
        input_size: int | None = None,
        trust_checkpoint: bool = False,
    ) -> Segmenter:
        """Load a segmenter as ``seg predict`` does: a ``seg train`` run directory (``best.pt``, else
        ``last.pt``) or a checkpoint file; ``device`` ``"auto"`` is CUDA when available; the other arguments are
        the class's."""
        model = segmentation_model.load_segmenter(path, trust_checkpoint=trust_checkpoint)
        return cls(model.to(resolve_device(device)), mode=mode, crop=crop, stride=stride, input_size=input_size)

    @property
    def classes(self) -> list[str]:
        """The class names, index = label value (empty when the checkpoint names none)."""
        return self.model.classes

    def __call__(self, image: ImageInput) -> np.ndarray:
        """The H×W int64 label map of ``image``: each pixel's class index."""
        label = predict_image(self.model, image_tensor(as_image_array(image)), mode=self.mode, crop=self.crop,
                              stride=self.stride, input_size=self.input_size)
        return label.numpy()
