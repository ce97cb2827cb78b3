"""Throughput measurement: call counts, medians, weight copying into timm, and a real comparison run."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from densevision.bench import (
    Timing,
    benchmark,
    benchmark_model,
    copy_matching_weights,
    format_result,
    time_models,
    timm_counterpart,
)
from densevision.errors import DenseVisionError


def test_timing_median_and_images_per_second() -> None:
    timing = Timing(times_s=[0.5, 0.1, 0.2, 0.3, 10.0], batch=4)
    assert timing.median_s == 0.3
    assert timing.img_per_s == pytest.approx(4 / 0.3)
    assert timing.to_dict()["img_per_s"] == pytest.approx(4 / 0.3)


def test_time_models_warms_up_and_alternates() -> None:
    calls: list[str] = []
    models = [lambda x: calls.append("a"), lambda x: calls.append("b")]
    timings = time_models(models, torch.zeros(3, 3, 4, 4), warmup=2, runs=3)
    assert calls == ["a", "a", "b", "b"] + ["a", "b"] * 3
    assert [len(t.times_s) for t in timings] == [3, 3] and timings[0].batch == 3
    with pytest.raises(DenseVisionError, match="runs"):
        time_models(models, torch.zeros(1, 3, 4, 4), runs=0)


def test_copy_matching_weights_copies_only_same_key_and_shape() -> None:
    source = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 3))
    target = nn.Sequential(nn.Linear(4, 5), nn.Linear(5, 2))
    assert copy_matching_weights(source, target) == (2, 4)
    torch.testing.assert_close(target[0].weight, source[0].weight)
    assert not torch.equal(target[1].bias, source[1].bias[:2])


def test_benchmark_against_timm_copies_all_weights() -> None:
    result = benchmark_model("vit_tiny_patch16_224", batch=1, warmup=1, runs=2, compare_timm=True)
    assert result["input_size"] == [3, 224, 224] and result["batch"] == 1
    timm = result["timm"]
    copied, total = timm["weights_copied"].split("/")
    assert copied == total
    assert timm["max_abs_diff"] <= 1e-4
    assert 0 <= timm["max_rel_diff"] <= 1e-5 and "of max |out|" in format_result(result)
    assert len(result["densevision"]["times_s"]) == 2 and timm["img_per_s"] > 0
    assert timm["ratio"] == pytest.approx(result["densevision"]["img_per_s"] / timm["img_per_s"])
    ours = result["densevision"]["times_s"]
    assert timm["round_ratios"] == pytest.approx([t / o for o, t in zip(ours, timm["times_s"], strict=True)])
    assert min(timm["round_ratios"]) <= timm["round_ratio_median"] <= max(timm["round_ratios"])
    assert "ratio" in format_result(result) and "rounds: median" in format_result(result)


@pytest.mark.parametrize(("name", "formulation"), [("cyclemlp_b1", "deform_conv2d"), ("asmlp_tiny", "pad-chunk-roll")])
def test_benchmark_against_upstream_formulation(name: str, formulation: str) -> None:
    result = benchmark_model(name, batch=1, size=64, warmup=0, runs=1, compare_upstream=True)
    up = result["upstream"]
    assert up["formulation"] == formulation and up["max_abs_diff"] <= 1e-4
    assert up["ratio"] == pytest.approx(result["densevision"]["img_per_s"] / up["img_per_s"])
    assert f"upstream {formulation}" in format_result(result)


def test_benchmark_without_timm_and_errors() -> None:
    (result,) = benchmark(["vit_tiny_patch16_224"], size=32, batch=1, warmup=0, runs=1)
    assert "timm" not in result and result["densevision"]["img_per_s"] > 0
    assert "timm" not in format_result(result)
    with pytest.raises(DenseVisionError, match="unknown model"):
        benchmark(["vit_tiny_patch16_224", "not_a_model"])
    with pytest.raises(DenseVisionError, match="timm has no model"):
        timm_counterpart("cyclemlp_b1")
    with pytest.raises(DenseVisionError, match="no upstream formulation"):
        benchmark(["vit_tiny_patch16_224"], size=32, batch=1, warmup=0, runs=1, compare_upstream=True)
    with pytest.raises(DenseVisionError, match="threads"):
        benchmark(["vit_tiny_patch16_224"], threads=0)
