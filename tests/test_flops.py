"""Parameter and multiply-add counts on the meta device."""

from __future__ import annotations

import pytest
from torch import nn

from densevision.flops import count_macs, count_params, default_input_size, model_complexity


def test_counts_of_a_small_network() -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    assert count_params(model) == 3 * 8 * 9 + 8 + 128 * 10 + 10
    assert count_macs(model, (3, 4, 4)) == 3 * 8 * 9 * 16 + 128 * 10
    assert default_input_size(model) == (3, 224, 224)
    assert model.training


def test_swin_tiny_matches_published_cost() -> None:
    info = model_complexity("swin_tiny_patch4_window7_224")
    assert info["params"] == 28_288_354
    assert info["gmacs"] == pytest.approx(4.5, abs=0.05)
    assert info["input_size"] == [3, 224, 224]
    assert model_complexity("swin_base_patch4_window12_384")["input_size"] == [3, 384, 384]
