"""Segmenter throughput with the head's share, and batched against one-at-a-time sliding windows."""

from __future__ import annotations

import pytest

from densevision.bench_segmentation import benchmark_segmenter, benchmark_slide, format_segmenter, format_slide
from densevision.errors import DenseVisionError

TINY = {"width": 8}


def test_segmenter_timing_has_a_head_share_between_zero_and_one():
    result = benchmark_segmenter("hrnet_w18_small", head="fpn", size=64, num_classes=5, runs=2,
                                 backbone_kwargs=TINY)
    assert result["segmenter"]["img_per_s"] > 0 and result["backbone_only"]["img_per_s"] > 0
    assert 0.0 < result["head_share"] < 1.0
    assert len(result["segmenter"]["times_s"]) == 2
    assert format_segmenter(result).startswith("seg fpn on hrnet_w18_small: ")


def test_slide_batched_windows_equal_one_at_a_time():
    result = benchmark_slide("hrnet_w18_small", height=64, width=128, crop=48, stride=32, num_classes=3, runs=2,
                             backbone_kwargs=TINY)
    assert result["windows"] == 2 * 4  # rows 0, 16; columns 0, 32, 64, 80
    assert result["max_abs_diff"] <= 1e-4
    assert result["speedup"] > 0 and len(result["round_speedups"]) == 2
    assert "(8 windows)" in format_slide(result)
    with pytest.raises(DenseVisionError, match="crop 96 is larger"):
        benchmark_slide("hrnet_w18_small", height=64, width=128, crop=96, backbone_kwargs=TINY)
