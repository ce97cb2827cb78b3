"""Segmenter throughput and batched sliding-window inference, measured in one run.

:func:`benchmark_segmenter` times a whole segmenter (backbone + decode head, the auxiliary head left out as at
test time) and its backbone alone on the same input, alternately, so the head's share of the time is
``1 − backbone / whole``. :func:`benchmark_slide` times :func:`~densevision.segmentation.predict.slide_inference`
with all windows of an image in one batch against the same windows run one at a time, and compares their
outputs.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

import torch

from densevision.bench import checked_device, time_models
from densevision.errors import DenseVisionError
from densevision.segmentation.model import Segmenter, build_segmenter
from densevision.segmentation.predict import slide_inference, window_starts

__all__ = ["benchmark_segmentation", "benchmark_segmenter", "benchmark_slide", "format_segmenter", "format_slide"]

ADE20K_CLASSES = 150
SEG_BACKBONES = ("swin_tiny_patch4_window7_224", "hrnet_w18_small")


def _segmenter(backbone: str, head: str, num_classes: int, device: torch.device,
               backbone_kwargs: dict[str, Any] | None) -> Segmenter:
    torch.manual_seed(0)
    return build_segmenter(backbone, head, num_classes, aux=False,
                           backbone_kwargs=backbone_kwargs).eval().to(device)


def benchmark_segmenter(backbone: str, *, head: str = "upernet", size: int = 512, batch: int = 1,
                        num_classes: int = ADE20K_CLASSES, device: str = "cpu", warmup: int = 1, runs: int = 3,
                        backbone_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Images/s of a ``head`` segmenter over ``backbone`` on a random ``batch×3×size×size`` input, and the
    head's share of the forward time (median of the rounds' ``1 − backbone time / whole time``)."""
    dev = checked_device(device)
    model = _segmenter(backbone, head, num_classes, dev, backbone_kwargs)
    x = torch.rand(batch, 3, size, size, device=dev, generator=torch.Generator(dev).manual_seed(0))
    whole, body = time_models([model, lambda t: model.backbone((t - model.mean) / model.std)], x,
                              warmup=warmup, runs=runs)
    shares = [1 - b / w for w, b in zip(whole.times_s, body.times_s, strict=True)]
    return {"backbone": backbone, "head": head, "num_classes": num_classes, "size": size, "batch": batch,
            "device": str(dev), "threads": torch.get_num_threads(), "runs": runs,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6, "segmenter": whole.to_dict(),
            "backbone_only": body.to_dict(), "head_share": statistics.median(shares)}


def benchmark_slide(backbone: str = "hrnet_w18_small", *, head: str = "fpn", height: int = 1024, width: int = 2048,
                    crop: int = 512, stride: int = 341, num_classes: int = 19, device: str = "cpu",
                    warmup: int = 1, runs: int = 2, backbone_kwargs: dict[str, Any] | None = None) -> dict[str, Any]:
    """Sliding-window inference of one ``height×width`` image (``crop`` windows every ``stride``): all windows
    as one batch against one window at a time; returns both timings, the speed-up (one-at-a-time time over
    batched time, median of the rounds) and the largest absolute difference of their logits."""
    if crop > min(height, width):
        raise DenseVisionError(f"crop {crop} is larger than the {height}x{width} image")
    dev = checked_device(device)
    model = _segmenter(backbone, head, num_classes, dev, backbone_kwargs)
    image = torch.rand(1, 3, height, width, device=dev, generator=torch.Generator(dev).manual_seed(0))
    windows = len(window_starts(height, crop, stride)) * len(window_starts(width, crop, stride))
    batched, single = time_models([lambda t: slide_inference(model, t, (crop, crop), (stride, stride),
                                                             window_batch=windows),
                                   lambda t: slide_inference(model, t, (crop, crop), (stride, stride),
                                                             window_batch=1)], image, warmup=warmup, runs=runs)
    with torch.inference_mode():
        diff = (slide_inference(model, image, (crop, crop), (stride, stride), window_batch=windows)
                - slide_inference(model, image, (crop, crop), (stride, stride), window_batch=1)).abs().max().item()
    rounds = [s / b for b, s in zip(batched.times_s, single.times_s, strict=True)]
    return {"backbone": backbone, "head": head, "image": [height, width], "crop": crop, "stride": stride,
            "windows": windows, "device": str(dev), "threads": torch.get_num_threads(), "runs": runs,
            "batched": batched.to_dict(), "one_at_a_time": single.to_dict(),
            "speedup": statistics.median(rounds), "round_speedups": rounds, "max_abs_diff": diff}


def format_segmenter(result: dict[str, Any]) -> str:
    """One line for a :func:`benchmark_segmenter` result."""
    return (f"seg {result['head']} on {result['backbone']}: {result['segmenter']['img_per_s']:.2f} img/s "
            f"({result['batch']}x3x{result['size']}x{result['size']}, {result['num_classes']} classes, "
            f"{result['params_m']:.1f}M params, {result['device']}, {result['threads']} threads); head "
            f"{100 * result['head_share']:.1f} % of the time")


def format_slide(result: dict[str, Any]) -> str:
    """One line for a :func:`benchmark_slide` result."""
    h, w = result["image"]
    return (f"seg slide {result['head']} on {result['backbone']}: {h}x{w}, crop {result['crop']}, stride "
            f"{result['stride']} ({result['windows']} windows): batched {result['batched']['median_s']:.2f} s, one "
            f"at a time {result['one_at_a_time']['median_s']:.2f} s, speed-up {result['speedup']:.2f}x, max |diff| "
            f"{result['max_abs_diff']:.1e} ({result['device']}, {result['threads']} threads)")


def benchmark_segmentation(backbones: Sequence[str] = SEG_BACKBONES, *, slide_backbone: str = "hrnet_w18_small",
                           device: str = "cpu", warmup: int = 1, runs: int = 3,
                           size: int = 512) -> list[dict[str, Any]]:
    """UperNet throughput on each of ``backbones`` at ``size``², then the sliding-window comparison over
    ``slide_backbone``; each result printed as it comes."""
    results = []
    for name in backbones:
        result = benchmark_segmenter(name, size=size, device=device, warmup=warmup, runs=runs)
        print(format_segmenter(result), flush=True)
        results.append({"seg": result})
    result = benchmark_slide(slide_backbone, device=device, warmup=warmup, runs=runs)
    print(format_slide(result), flush=True)
    results.append({"seg_slide": result})
    return results
