"""Segmenter inference: whole-image or sliding-window logits at each image's own size, label maps per image.

Sliding window (mmsegmentation ``slide_inference``): windows of ``crop`` every ``stride``, the last one ending
at the border, logits summed and divided by how many windows cover each pixel. The windows of one image run
as one batch (``window_batch`` at a time), not one by one.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from tqdm import tqdm

from densevision.data.images import read_image, records_from_folder
from densevision.data.labelmaps import image_tensor, write_label_map
from densevision.segmentation.heads import resize
from densevision.segmentation.model import Segmenter


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window starts along an axis of length ``size``: every ``stride``, the last window ending at the border
    (one window at 0 when ``size <= crop``)."""
    count = max(math.ceil((size - crop) / stride), 0) + 1
    return sorted({max(min(i * stride, size - crop), 0) for i in range(count)})


@torch.no_grad()
def slide_inference(model: Segmenter, image: torch.Tensor, crop: Sequence[int], stride: Sequence[int], *,
                    window_batch: int = 32) -> torch.Tensor:
    """``1×3×H×W`` in [0, 1] -> ``1×K×H×W`` logits averaged over overlapping ``crop`` windows."""
    _, _, h, w = image.shape
    ch, cw = min(crop[0], h), min(crop[1], w)
    boxes = [(y, x) for y in window_starts(h, ch, stride[0]) for x in window_starts(w, cw, stride[1])]
    windows = torch.cat([image[..., y:y + ch, x:x + cw] for y, x in boxes])
    logits = torch.cat([model(windows[i:i + window_batch]) for i in range(0, len(boxes), window_batch)])
    total = logits.new_zeros(1, logits.shape[1], h, w)
    count = logits.new_zeros(1, 1, h, w)
    for (y, x), window in zip(boxes, logits, strict=True):
        total[0, :, y:y + ch, x:x + cw] += window
        count[..., y:y + ch, x:x + cw] += 1
    return total / count


def slide_stride(crop: Sequence[int], stride: Sequence[int] | None = None) -> list[int]:
    """The window step of sliding-window inference: ``stride`` as given, else 2/3 of ``crop`` (H, W)."""
    return [int(v) for v in stride] if stride is not None else [max(1, 2 * int(c) // 3) for c in crop]


def input_shape(height: int, width: int, input_size: int | None) -> tuple[int, int]:
    """The size an ``height×width`` image runs at: its longer side rescaled to ``input_size`` (aspect kept;
    None: its own size)."""
    if input_size is None:
        return height, width
    scale = input_size / max(height, width)
    return max(round(height * scale), 1), max(round(width * scale), 1)


@torch.no_grad()
def image_logits(model: Segmenter, batch: torch.Tensor, *, mode: str = "whole", crop: Sequence[int] | None = None,
                 stride: Sequence[int] | None = None, input_size: int | None = None) -> torch.Tensor:
    """``1×K×H×W`` logits of a ``1×3×H×W`` image in [0, 1] (``mode`` "whole" or "slide"). With ``input_size``
    the image runs with its longer side rescaled to that many pixels (bilinear, antialiased) and the logits are
    resized back to ``H×W``."""
    size = batch.shape[-2:]
    shape = input_shape(*size, input_size)
    if shape != tuple(size):
        batch = torch.nn.functional.interpolate(batch, size=shape, mode="bilinear", align_corners=False,
                                                antialias=shape[0] < size[0])
    if mode == "slide":
        if crop is None or stride is None:
            raise ValueError("slide inference needs crop and stride")
        logits = slide_inference(model, batch, crop, stride)
    else:
        logits = model(batch)
    return resize(logits, size) if shape != tuple(size) else logits


@torch.no_grad()
def predict_image(model: Segmenter, image: torch.Tensor, *, mode: str = "whole", crop: Sequence[int] | None = None,
                  stride: Sequence[int] | None = None, input_size: int | None = None) -> torch.Tensor:
    """Label map of one ``3×H×W`` image in [0, 1]: ``H×W`` int64 class indices (see :func:`image_logits`)."""
    batch = image[None].to(next(model.parameters()).device)
    logits = image_logits(model, batch, mode=mode, crop=crop, stride=stride, input_size=input_size)
    return logits.argmax(1)[0].cpu()


def predict_folder(model: Segmenter, images: str | os.PathLike, out_dir: str | os.PathLike, *, mode: str = "whole",
                   crop: Sequence[int] | None = None, stride: Sequence[int] | None = None,
                   input_size: int | None = None, progress: bool = True) -> list[Path]:
    """Write one palette PNG of class indices (``<stem>.png``, the image's size) per image of a folder or
    for one file (run at ``input_size``, see :func:`predict_image`); returns the written paths."""
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for record in tqdm(records_from_folder(images), disable=not progress, desc="seg predict"):
        label = predict_image(model, image_tensor(read_image(record.path)), mode=mode, crop=crop, stride=stride,
                              input_size=input_size)
        path = out_dir / f"{Path(record.file_name).stem}.png"
        write_label_map(path, label.numpy())
        written.append(path)
    return written
