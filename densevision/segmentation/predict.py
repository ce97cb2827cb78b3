"""Segmenter inference: whole-image or sliding-window logits at each image's own size, label maps per image.

Sliding window (mmsegmentation ``slide_inference``): windows of ``crop`` every ``stride``, the last one ending
at the border, logits summed and divided by how many windows cover each pixel. The windows of one image run
as one batch (``window_batch`` at a time), not one by one.

Test-time augmentation (mmsegmentation ``aug_test``, the "ms+flip" numbers of the Swin / AS-MLP papers): the
image runs at each ratio of ``scales`` times its run size (its own, or ``input_size``), and mirrored with
``flip``; each run's logits are resized to the image, turned into softmax probabilities, mirrored back, and the
probabilities are averaged (mmsegmentation averages probabilities, not logits, in its 0.x ``aug_test`` and its
1.x ``SegTTAModel`` alike).
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


def input_shape(height: int, width: int, input_size: int | None, ratio: float = 1.0) -> tuple[int, int]:
    """The size an ``height×width`` image runs at: its longer side rescaled to ``input_size`` (aspect kept;
    None: its own size), times ``ratio``."""
    scale = ratio if input_size is None else ratio * input_size / max(height, width)
    if scale == 1.0:
        return height, width
    return max(round(height * scale), 1), max(round(width * scale), 1)


@torch.no_grad()
def image_logits(model: Segmenter, batch: torch.Tensor, *, mode: str = "whole", crop: Sequence[int] | None = None,
                 stride: Sequence[int] | None = None, input_size: int | None = None,
                 ratio: float = 1.0) -> torch.Tensor:
    """``1×K×H×W`` logits of a ``1×3×H×W`` image in [0, 1] (``mode`` "whole" or "slide"). With ``input_size``
    the image runs with its longer side rescaled to that many pixels, times ``ratio`` (bilinear, antialiased
    when shrinking), and the logits are resized back to ``H×W``."""
    size = batch.shape[-2:]
    shape = input_shape(*size, input_size, ratio)
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
def image_probabilities(model: Segmenter, batch: torch.Tensor, *, scales: Sequence[float] = (1.0,),
                        flip: bool = False, mode: str = "whole", crop: Sequence[int] | None = None,
                        stride: Sequence[int] | None = None, input_size: int | None = None) -> torch.Tensor:
    """``1×K×H×W`` class probabilities of a ``1×3×H×W`` image in [0, 1], averaged over the runs at each ratio
    of ``scales`` (of :func:`image_logits`' run size) and, with ``flip``, of the mirrored image (see the module
    doc). ``scales=(1.0,)`` without ``flip`` is the softmax of :func:`image_logits`."""
    if not scales:
        raise ValueError("test-time augmentation needs at least one scale")
    total = None
    for ratio in scales:
        for mirrored in (False, True) if flip else (False,):
            logits = image_logits(model, batch.flip(-1) if mirrored else batch, mode=mode, crop=crop,
                                  stride=stride, input_size=input_size, ratio=ratio)
            probs = logits.float().softmax(1)
            probs = probs.flip(-1) if mirrored else probs
            total = probs if total is None else total.add_(probs)
    return total / (len(scales) * (2 if flip else 1))


@torch.no_grad()
def predict_image(model: Segmenter, image: torch.Tensor, *, mode: str = "whole", crop: Sequence[int] | None = None,
                  stride: Sequence[int] | None = None, input_size: int | None = None,
                  scales: Sequence[float] = (1.0,), flip: bool = False) -> torch.Tensor:
    """Label map of one ``3×H×W`` image in [0, 1]: ``H×W`` int64 class indices, the argmax of
    :func:`image_probabilities` (test-time augmentation with ``scales`` other than ``(1.0,)`` or ``flip``)."""
    batch = image[None].to(next(model.parameters()).device)
    probs = image_probabilities(model, batch, scales=scales, flip=flip, mode=mode, crop=crop, stride=stride,
                                input_size=input_size)
    return probs.argmax(1)[0].cpu()


def predict_folder(model: Segmenter, images: str | os.PathLike, out_dir: str | os.PathLike, *, mode: str = "whole",
                   crop: Sequence[int] | None = None, stride: Sequence[int] | None = None,
                   input_size: int | None = None, scales: Sequence[float] = (1.0,), flip: bool = False,
                   viz_dir: str | os.PathLike | None = None, progress: bool = True) -> list[Path]:
    """Write one palette PNG of class indices (``<stem>.png``, the image's size) per image of a folder or
    for one file (see :func:`predict_image`); with ``viz_dir`` also the image overlaid with its label map and a
    legend of the classes present (:func:`densevision.viz.draw_label_map`). Returns the label PNGs written."""
    model.eval()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if viz_dir is not None:
        from densevision.viz import draw_label_map, save_png

        Path(viz_dir).mkdir(parents=True, exist_ok=True)
    written = []
    for record in tqdm(records_from_folder(images), disable=not progress, desc="seg predict"):
        array = read_image(record.path)
        label = predict_image(model, image_tensor(array), mode=mode, crop=crop, stride=stride,
                              input_size=input_size, scales=scales, flip=flip).numpy()
        stem = Path(record.file_name).stem
        path = out_dir / f"{stem}.png"
        write_label_map(path, label)
        if viz_dir is not None:
            save_png(Path(viz_dir) / f"{stem}.png", draw_label_map(array, label, model.classes))
        written.append(path)
    return written
