"""The inputs of the one-image entries, checked and converted once: the image (a file path, a PIL image, an
H×W×3 uint8 RGB array or a 3×H×W float tensor in [0, 1], all to the H×W×3 uint8 RGB array the file-based
commands read), boxes, scores and instance masks (numpy arrays, tensors or nested lists)."""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from PIL import Image

from densevision.data.images import pil_to_rgb, read_image
from densevision.errors import DenseVisionError

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor
"""What the one-image entries take as an image."""


def as_image_array(image: ImageInput) -> np.ndarray:
    """``image`` as H×W×3 uint8 RGB.

    Args:
        image: a file path (any format :func:`~densevision.data.images.read_image` decodes), a PIL image (any
            mode, converted as a file of that mode is), an H×W×3 uint8 RGB array, or a 3×H×W floating-point
            tensor with values in [0, 1] (rounded to the nearest of the 256 levels, so ``uint8 / 255`` round
            trips exactly).

    Returns:
        A new H×W×3 uint8 C-contiguous array (the input is never modified).

    Raises:
        DenseVisionError: one line naming what is wrong (a missing or unreadable file, a wrong shape, dtype or
            value range, an unsupported type).
    """
    if isinstance(image, (str, os.PathLike)):
        return read_image(image)
    if isinstance(image, Image.Image):
        return pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3 or 0 in image.shape:
            raise DenseVisionError(f"image array must be H×W×3 uint8 RGB, got shape {image.shape} and dtype "
                                   f"{image.dtype}")
        return np.array(image, order="C")
    if isinstance(image, torch.Tensor):
        if not image.is_floating_point() or image.ndim != 3 or image.shape[0] != 3 or 0 in image.shape:
            raise DenseVisionError(f"image tensor must be 3×H×W float in [0, 1], got shape {tuple(image.shape)} "
                                   f"and dtype {image.dtype}")
        values = image.detach().cpu().float()
        if not (torch.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise DenseVisionError("image tensor values must be finite and in [0, 1]")
        return values.mul(255.0).round_().to(torch.uint8).permute(1, 2, 0).contiguous().numpy()
    raise DenseVisionError(
        "image must be a file path, a PIL image, an H×W×3 uint8 RGB array or a 3×H×W float tensor in [0, 1], "
        f"not {type(image).__name__}")


def _numbers(value: Any, shape: tuple[int | None, ...]) -> np.ndarray | None:
    """A float64 copy of finite numbers of ``shape`` (None: any length), or None when ``value`` is not that."""
    arr = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value, dtype=object)
    try:
        arr = arr.astype(np.float64)
    except (TypeError, ValueError):
        return None
    if arr.ndim != len(shape) or any(s is not None and s != n for s, n in zip(shape, arr.shape, strict=True)):
        return None
    return arr if np.isfinite(arr).all() else None


def as_boxes(boxes: Any, count: int | None = None) -> np.ndarray:
    """N×4 ``(x0, y0, x1, y1)`` boxes (``count`` of them when given) as float64, with ``x0 <= x1`` and
    ``y0 <= y1``; anything else raises ``DenseVisionError``."""
    arr = _numbers(boxes, (count, 4))
    if arr is None:
        rows = "N" if count is None else str(count)
        raise DenseVisionError(f"boxes must be an array of {rows}×4 finite numbers, got shape {np.shape(boxes)}")
    if (arr[:, 2:] < arr[:, :2]).any():
        raise DenseVisionError("boxes must be (x0, y0, x1, y1) with x0 <= x1 and y0 <= y1")
    return arr


def as_scores(scores: Any, count: int) -> np.ndarray:
    """``count`` finite scores as float64; anything else raises ``DenseVisionError``."""
    arr = _numbers(scores, (count,))
    if arr is None:
        raise DenseVisionError(f"scores must be {count} finite numbers (one per instance), got shape "
                               f"{np.shape(scores)}")
    return arr


def as_masks(masks: Any, height: int, width: int) -> np.ndarray:
    """N×``height``×``width`` bool (or 0/1 integer) masks as bool; anything else raises ``DenseVisionError``."""
    try:
        arr = masks.detach().cpu().numpy() if isinstance(masks, torch.Tensor) else np.asarray(masks)
    except ValueError as exc:
        raise DenseVisionError(f"masks must be an N×{height}×{width} array ({exc})") from None
    if arr.ndim != 3 or arr.shape[1:] != (height, width):
        raise DenseVisionError(f"masks must be N×{height}×{width} (the image's size), got shape {arr.shape}")
    if arr.dtype == np.bool_:
        return arr
    if not (np.issubdtype(arr.dtype, np.integer) and ((arr == 0) | (arr == 1)).all()):
        raise DenseVisionError(f"masks must be bool or 0/1 integers, got dtype {arr.dtype}")
    return arr.astype(np.bool_)
