"""Forward throughput of zoo models, optionally against reference implementations in the same run.

Any registered model works (the measurement only needs ``create_model(name)`` and ``model(x)``). References:
the timm model of the same name (``compare_timm``; this model's weights copied in where keys and shapes allow)
and, for CycleMLP and AS-MLP, upstream's own formulation on the same weights (``compare_upstream``; written in
the source checkout's ``benchmarks/upstream_formulations.py``, deliberately outside the library). Each
measurement: warm-up calls, then several timed calls of one batch, median time -> images per second; the
models are timed alternately (A, B, A, B, …) so that load changes on a shared machine affect all alike, and
their outputs are compared.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn

from densevision.errors import DenseVisionError
from densevision.flops import default_input_size
from densevision.models import create_model, list_models

__all__ = [
    "Timing",
    "benchmark",
    "benchmark_model",
    "copy_matching_weights",
    "format_result",
    "time_models",
    "timm_counterpart",
    "upstream_counterpart",
    "upstream_formulations",
    "benchmark_refine",
    "checked_device",
    "format_refine",
    "set_threads",
]

UPSTREAM_FILE = "upstream_formulations.py"


@dataclass
class Timing:
    """Seconds per forward call of one batch, for each timed run."""

    times_s: list[float] = field(default_factory=list)
    batch: int = 1

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def img_per_s(self) -> float:
        return self.batch / self.median_s

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "median_s": self.median_s, "img_per_s": self.img_per_s}


def checked_device(device: str) -> torch.device:
    """``torch.device(device)``, refusing CUDA where none is available."""
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise DenseVisionError("--device cuda: no CUDA device is available")
    return dev


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if not amp:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16)


def time_models(
    models: Sequence[Callable[[torch.Tensor], Any]],
    x: torch.Tensor,
    *,
    warmup: int = 2,
    runs: int = 5,
    amp: bool = False,
) -> list[Timing]:
    """Time each callable on ``x`` (``B×3×H×W``): ``warmup`` untimed calls each, then ``runs`` rounds in which
    every model is timed once, in turn."""
    if runs < 1:
        raise DenseVisionError(f"runs must be at least 1, got {runs}")
    timings = [Timing(batch=x.shape[0]) for _ in models]
    with torch.inference_mode(), _autocast(x.device, amp):
        for model in models:
            for _ in range(warmup):
                model(x)
        _synchronize(x.device)
        for _ in range(runs):
            for model, timing in zip(models, timings, strict=True):
                start = time.perf_counter()
                model(x)
                _synchronize(x.device)
                timing.times_s.append(time.perf_counter() - start)
    return timings


def copy_matching_weights(source: nn.Module, target: nn.Module) -> tuple[int, int]:
    """Copy every tensor of ``source.state_dict()`` whose key and shape exist in ``target``.

    Returns ``(copied, total)``: how many of ``target``'s state-dict entries were overwritten, of how many.
    """
    src = source.state_dict()
    own = target.state_dict()
    matched = {k: v for k, v in src.items() if k in own and own[k].shape == v.shape}
    target.load_state_dict(matched, strict=False)
    return len(matched), len(own)


def timm_counterpart(name: str, num_classes: int = 1000, img_size: int | None = None) -> nn.Module:
    """``timm.create_model(name, pretrained=False)``; for models whose input size timm fixes at construction
    (Swin, ViT) an ``img_size`` other than the default is passed on."""
    import timm

    entry = timm.models.is_model(name) and timm.models.model_entrypoint(name)
    if not entry or entry.__module__.startswith("densevision"):
        raise DenseVisionError(f"{name}: timm has no model of this name to compare with (drop --compare-timm)")
    kwargs: dict[str, Any] = {"num_classes": num_classes}
    cfg = timm.models.get_pretrained_cfg(name)
    if img_size is not None and cfg is not None and cfg.fixed_input_size and img_size != cfg.input_size[-1]:
        kwargs["img_size"] = img_size
    return timm.create_model(name, pretrained=False, **kwargs)


@functools.cache
def upstream_formulations() -> ModuleType:
    """``benchmarks/upstream_formulations.py`` of the source checkout holding this package (or of the current
    directory), imported."""
    for folder in (Path(__file__).resolve().parents[1] / "benchmarks", Path.cwd() / "benchmarks"):
        path = folder / UPSTREAM_FILE
        if path.is_file():
            spec = importlib.util.spec_from_file_location("densevision_upstream_formulations", path)
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
            return module
    raise DenseVisionError(
        f"--compare-upstream needs benchmarks/{UPSTREAM_FILE} of a densevision source checkout; run from its root"
    )


def upstream_counterpart(name: str, model: nn.Module) -> tuple[nn.Module, str]:
    """``(model in upstream's formulation, the formulation's label)``, sharing ``model``'s weights."""
    try:
        return upstream_formulations().upstream_model(name, model)
    except ValueError as exc:
        raise DenseVisionError(f"{exc} (drop --compare-upstream)") from None


def benchmark_model(
    name: str,
    *,
    batch: int = 8,
    size: int | None = None,
    device: str = "cpu",
    amp: bool = False,
    warmup: int = 2,
    runs: int = 5,
    compare_timm: bool = False,
    compare_upstream: bool = False,
) -> dict[str, Any]:
    """Measure one zoo model (and its references) on a random ``batch×3×size×size`` input.

    Returns a JSON-ready dict: model, batch, input size, device, amp, threads, warmup, runs, ``densevision``
    timing (times, median, img/s), and per reference (``timm``, ``upstream``) its timing plus ``ratio``
    (densevision img/s over the reference's), ``round_ratios`` (the reference's time over ours in each round,
    the two calls of a round being adjacent, so slow drifts of the machine cancel) with their median
    ``round_ratio_median``, ``max_abs_diff`` of the outputs and ``max_rel_diff`` (that over the reference's
    largest absolute output: randomly initialised deep networks can output values of 1e7); ``timm`` also holds
    ``weights_copied`` (``"copied/total"``), ``upstream`` its ``formulation``.
    """
    dev = checked_device(device)
    model = create_model(name).eval().to(dev)
    default = default_input_size(model)
    h = w = size or default[-1]
    result: dict[str, Any] = {
        "model": name,
        "batch": batch,
        "input_size": [3, h, w],
        "device": str(dev),
        "amp": amp,
        "threads": torch.get_num_threads(),
        "warmup": warmup,
        "runs": runs,
    }
    references: dict[str, nn.Module] = {}
    if compare_timm:
        references["timm"] = timm_counterpart(name, img_size=h).eval().to(dev)
        copied, total = copy_matching_weights(model, references["timm"])
        result["timm"] = {"weights_copied": f"{copied}/{total}"}
    if compare_upstream:
        references["upstream"], label = upstream_counterpart(name, model)
        result["upstream"] = {"formulation": label}
    x = torch.randn(batch, 3, h, w, device=dev, generator=torch.Generator(dev).manual_seed(0))
    ours, *theirs = time_models([model, *references.values()], x, warmup=warmup, runs=runs, amp=amp)
    result["densevision"] = ours.to_dict()
    with torch.inference_mode(), _autocast(dev, amp):
        out = model(x[:1]).float()
        for (key, reference), timing in zip(references.items(), theirs, strict=True):
            expected = reference(x[:1]).float()
            diff = (out - expected).abs().max().item()
            rounds = [t / o for o, t in zip(ours.times_s, timing.times_s, strict=True)]
            result[key].update(timing.to_dict(), ratio=ours.img_per_s / timing.img_per_s, max_abs_diff=diff,
                               max_rel_diff=diff / max(expected.abs().max().item(), 1e-12),
                               round_ratios=rounds, round_ratio_median=statistics.median(rounds))
    return result


def benchmark(names: Sequence[str], *, threads: int | None = None, **kwargs: Any) -> list[dict[str, Any]]:
    """:func:`benchmark_model` for each name (``threads`` sets ``torch.set_num_threads`` first)."""
    known = set(list_models())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise DenseVisionError(f"unknown model(s) {', '.join(unknown)} (see `densevision models`)")
    set_threads(threads)
    return [benchmark_model(name, **kwargs) for name in names]


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` (None: keep torch's choice)."""
    if threads is not None:
        if threads < 1:
            raise DenseVisionError(f"--threads must be at least 1, got {threads}")
        torch.set_num_threads(threads)


def format_result(result: dict[str, Any]) -> str:
    """One human-readable line per result."""
    ours = result["densevision"]
    line = (
        f"{result['model']}: {ours['img_per_s']:.2f} img/s (median {ours['median_s'] * 1e3:.1f} ms/batch, "
        f"batch {result['batch']}, {result['input_size'][1]}x{result['input_size'][2]}, {result['device']}"
        f"{', amp' if result['amp'] else ''}, {result['threads']} threads)"
    )
    if "timm" in result:
        timm = result["timm"]
        line += (
            f"; timm {timm['img_per_s']:.2f} img/s, ratio {timm['ratio']:.2f}x{_rounds(timm)} "
            f"(weights copied {timm['weights_copied']}, {_diff(timm)})"
        )
    if "upstream" in result:
        up = result["upstream"]
        line += (
            f"; upstream {up['formulation']} {up['img_per_s']:.2f} img/s, ratio {up['ratio']:.2f}x{_rounds(up)} "
            f"({_diff(up)})"
        )
    return line


def _diff(reference: dict[str, Any]) -> str:
    """``max |diff| 1.80e+01 = 4.0e-07 of max |out|``."""
    return f"max |diff| {reference['max_abs_diff']:.2e} = {reference['max_rel_diff']:.1e} of max |out|"


def _rounds(reference: dict[str, Any]) -> str:
    """`` [rounds: median 2.41x, 2.20-2.63x]`` when there are several rounds."""
    rounds = reference["round_ratios"]
    if len(rounds) < 2:
        return ""
    return f" [rounds: median {reference['round_ratio_median']:.2f}x, {min(rounds):.2f}-{max(rounds):.2f}x]"


def _mask_head_like(mask: np.ndarray, grid: int = 28) -> np.ndarray:
    """A binary ``H×W`` mask resampled through a ``grid``×``grid`` map over its box, as a Mask R-CNN mask
    head would predict it (the coarse input BPR exists for)."""
    ys, xs = np.nonzero(mask)
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    small = cv2.resize(mask[y0:y1, x0:x1].astype(np.float32), (grid, grid), interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (int(x1 - x0), int(y1 - y0)), interpolation=cv2.INTER_LINEAR)
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = back >= 0.5
    return out


def coarse_results(ann: dict[str, Any]) -> list[dict[str, Any]]:
    """COCO results whose masks are the ground truth of ``ann`` made mask-head coarse (score 1)."""
    from pycocotools import mask as mask_utils

    from densevision.data.masks import annotation_to_mask

    sizes = {img["id"]: (img["height"], img["width"]) for img in ann["images"]}
    results = []
    for a in ann["annotations"]:
        rle = mask_utils.encode(np.asfortranarray(_mask_head_like(annotation_to_mask(a["segmentation"],
                                                                                     *sizes[a["image_id"]]))))
        results.append({"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0,
                        "segmentation": {"size": rle["size"], "counts": rle["counts"].decode("ascii")}})
    return results


def benchmark_refine(
    *,
    images: int = 20,
    size: int = 512,
    batch: int = 64,
    nms_iou: float = 0.25,
    device: str = "cpu",
    checkpoint: str | None = None,
    repeats: int = 2,
) -> dict[str, Any]:
    """Throughput of :func:`densevision.refine.refine_results` on ``images`` synthetic ``size``² images whose
    ground-truth masks are made mask-head coarse; the network has random weights unless ``checkpoint`` (speed
    does not depend on them). Returns instances/s of the fastest of ``repeats`` runs (after a warm-up), the
    seconds per stage and the share of the wall time spent outside the network (extraction + merge)."""
    import tempfile

    from densevision.data.jsonio import read_json
    from densevision.data.synthetic import generate
    from densevision.refine.network import build_refine_net, load_refine_net
    from densevision.refine.pipeline import refine_results

    dev = checked_device(device)
    if images < 1 or repeats < 1:
        raise DenseVisionError(f"images and repeats must be at least 1, got {images} and {repeats}")
    model = load_refine_net(checkpoint) if checkpoint else build_refine_net().eval()
    with tempfile.TemporaryDirectory() as tmp:
        ann_path = generate(tmp, train=0, val=images, size=size, seed=0, progress=False)["val"]
        ann = read_json(ann_path)
        results = coarse_results(ann)
        kwargs = {"nms_iou": nms_iou, "batch_size": batch, "device": dev, "progress": False}
        refine_results(ann["images"][:1], Path(tmp) / "val", [r for r in results if r["image_id"] ==
                                                               ann["images"][0]["id"]], model, **kwargs)
        runs = []
        for _ in range(repeats):
            stats: dict[str, float] = {}
            _synchronize(dev)
            start = time.perf_counter()
            refine_results(ann["images"], Path(tmp) / "val", results, model, stats=stats, **kwargs)
            _synchronize(dev)
            runs.append((time.perf_counter() - start, stats))
    wall, stats = min(runs, key=lambda r: r[0])
    return {"images": images, "size": size, "device": str(dev), "threads": torch.get_num_threads(), "batch": batch,
            "instances": len(results), "wall_s": wall, "instances_per_s": len(results) / wall, "stage_s": stats,
            "extract_plus_merge_fraction": (stats["extract"] + stats["merge"]) / wall}


def format_refine(result: dict[str, Any]) -> str:
    """One human-readable line for a :func:`benchmark_refine` result."""
    return (f"bpr refine: {result['instances_per_s']:.1f} inst/s ({result['instances']} instances on "
            f"{result['images']} {result['size']}² images in {result['wall_s']:.1f} s, {result['device']}, "
            f"{result['threads']} threads, batch {result['batch']}); extraction + merge "
            f"{100 * result['extract_plus_merge_fraction']:.1f} % of the wall time")
