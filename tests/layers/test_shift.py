"""Cycle-FC and the AS-MLP axial shift against upstream's formulations: ``torchvision.ops.deform_conv2d`` with
the official offset layout, and pad → chunk → roll → concat → crop (``benchmarks/upstream_formulations.py``)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import deform_conv2d

from densevision.bench import upstream_formulations
from densevision.layers import CycleFC, axial_shift, cycle_fc_offsets, shift_channel_groups
from densevision.layers.shift import gather_shifted


def deform_cycle_fc(fc: CycleFC, x: torch.Tensor) -> torch.Tensor:
    """Upstream Cycle-FC: a deformable convolution whose offsets are the layer's ``offset`` buffer (NCHW)."""
    b, _, h, w = x.shape
    return deform_conv2d(x, fc.offset.expand(b, -1, h, w), fc.weight, fc.bias)


pad_chunk_roll_shift = upstream_formulations().pad_chunk_roll_shift


def test_offsets_follow_the_official_layout() -> None:
    along_w = cycle_fc_offsets(5, (1, 3)).view(5, 2)
    assert along_w[:, 0].tolist() == [0] * 5 and along_w[:, 1].tolist() == [0, 1, -1, 0, 1]
    along_h = cycle_fc_offsets(5, (3, 1)).view(5, 2)
    assert along_h[:, 0].tolist() == [0, 1, -1, 0, 1] and along_h[:, 1].tolist() == [0] * 5
    assert cycle_fc_offsets(6, (1, 5)).view(6, 2)[:, 1].tolist() == [0, 1, 2, -2, -1, 0]
    with pytest.raises(ValueError, match="kernel"):
        cycle_fc_offsets(4, (3, 3))


@pytest.mark.parametrize("kernel", [(1, 3), (3, 1), (1, 5), (7, 1)])
@pytest.mark.parametrize("channels", [1, 2, 7, 16])
def test_cycle_fc_equals_deform_conv2d(kernel: tuple[int, int], channels: int) -> None:
    torch.manual_seed(0)
    fc = CycleFC(channels, 6, kernel)
    x = torch.randn(2, channels, 5, 9)
    ours = fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    assert (ours - deform_cycle_fc(fc, x)).abs().max() <= 1e-5


def test_cycle_fc_gradients_equal_deform_conv2d() -> None:
    torch.manual_seed(1)
    fc = CycleFC(8, 5, (1, 3))
    x = torch.randn(2, 8, 4, 6, requires_grad=True)
    target = torch.randn(2, 5, 4, 6)
    (fc(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2) * target).sum().backward()
    ours = [x.grad.clone(), fc.weight.grad.clone(), fc.bias.grad.clone()]
    x.grad = fc.weight.grad = fc.bias.grad = None
    (deform_cycle_fc(fc, x) * target).sum().backward()
    for a, b in zip(ours, [x.grad, fc.weight.grad, fc.bias.grad], strict=True):
        assert (a - b).abs().max() <= 1e-5


@pytest.mark.parametrize("kernel", [(1, 3), (5, 1)])
@pytest.mark.parametrize("channels", [1, 7, 16])
def test_cycle_fc_splits_into_still_and_moved_channels(kernel: tuple[int, int], channels: int) -> None:
    torch.manual_seed(0)
    fc = CycleFC(channels, 6, kernel)
    x = torch.randn(2, 5, 9, channels)
    k = kernel[0] * kernel[1]
    assert fc.still_mask.tolist() == [float(i % k == 0) for i in range(channels)]
    assert sorted(fc.moved_index.tolist()) == [i for i in range(channels) if i % k]
    moved = fc.shift_moved(x)
    assert torch.equal(moved, fc.shift(x)[..., fc.moved_index])
    weight = fc.weight.flatten(1)
    split = F.linear(x, weight * fc.still_mask, fc.bias) + F.linear(moved, weight[:, fc.moved_index])
    assert (split - fc(x)).abs().max() <= 1e-5
    assert "still_mask" not in fc.state_dict() and "moved_index" not in fc.state_dict()


def test_gather_shifted_concatenates_groups_in_order(monkeypatch: pytest.MonkeyPatch) -> None:
    x = torch.randn(2, 4, 6, 11)
    groups = [(slice(2, None, 3), -1), (slice(0, 4), 2), (slice(1, None, 3), 0)]
    parts = []
    for ch, s in groups:  # output row p of a group holds input row p + s, zero outside
        part = torch.zeros_like(x[..., ch])
        for p in range(x.shape[1]):
            if 0 <= p + s < x.shape[1]:
                part[:, p] = x[:, p + s, :, ch]
        parts.append(part)
    expected = torch.cat(parts, -1)
    assert torch.equal(gather_shifted(x, groups, 1, -1), expected)
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    assert torch.equal(gather_shifted(x, groups, 1, -1), expected)


def test_cycle_fc_reads_the_right_neighbour() -> None:
    fc = CycleFC(3, 3, (1, 3), bias=False)
    with torch.no_grad():
        fc.weight.copy_(torch.eye(3)[:, :, None, None])
    x = torch.arange(4.0)[:, None].expand(4, 3).reshape(1, 1, 4, 3)  # x[..., w, c] = w
    out = fc(x)[0, 0]
    assert out[:, 0].tolist() == [0, 1, 2, 3]  # dx = 0
    assert out[:, 1].tolist() == [1, 2, 3, 0]  # dx = +1: right neighbour, zero past the edge
    assert out[:, 2].tolist() == [0, 0, 1, 2]  # dx = -1


@pytest.mark.parametrize("channels", [1, 3, 6, 16, 96, 97])
@pytest.mark.parametrize("shift_size", [3, 5, 7])
def test_axial_shift_equals_pad_chunk_roll(channels: int, shift_size: int) -> None:
    x = torch.randn(2, channels, 5, 6)
    for dim in (2, 3):
        expected = pad_chunk_roll_shift(x, shift_size, dim)
        assert torch.equal(axial_shift(x, shift_size, dim), expected)
        channels_last = axial_shift(x.permute(0, 2, 3, 1).contiguous(), shift_size, dim - 1, channel_dim=3)
        assert torch.equal(channels_last.permute(0, 3, 1, 2), expected)


def test_axial_shift_group_offsets() -> None:
    x = torch.arange(7.0).expand(1, 10, 1, 7)  # value = column
    out = axial_shift(x, 5, 3)[0, :, 0]
    assert out[0].tolist() == [2, 3, 4, 5, 6, 0, 0]  # group 0 reads p + 2
    assert out[2].tolist() == [1, 2, 3, 4, 5, 6, 0]  # group 1 (channels 2, 3) reads p + 1
    assert torch.equal(out[4], x[0, 4, 0])  # group 2: no shift
    assert out[9].tolist() == [0, 0, 0, 1, 2, 3, 4]  # group 4 reads p − 2
    with pytest.raises(ValueError, match="odd"):
        axial_shift(x, 4, 3)


def test_shift_larger_than_the_map_gives_zeros() -> None:
    x = torch.randn(1, 5, 2, 1)
    out = axial_shift(x, 5, 2)
    assert torch.equal(out[:, :1], torch.zeros(1, 1, 2, 1)) and torch.equal(out[:, 2], x[:, 2])
    assert torch.equal(out, pad_chunk_roll_shift(x, 5, 2))


def test_export_formulation_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ONNX export the shift is a pad, slices and a concat (plus a channel gather for strided groups)."""
    x = torch.randn(2, 4, 6, 11)
    groups = [(slice(r, None, 3), (r + 1) % 3 - 1) for r in range(3)]
    eager = [shift_channel_groups(x, groups, 2, -1), axial_shift(x, 5, 2), axial_shift(x, 5, 3)]
    monkeypatch.setattr(torch.onnx, "is_in_onnx_export", lambda: True)
    exported = [shift_channel_groups(x, groups, 2, -1), axial_shift(x, 5, 2), axial_shift(x, 5, 3)]
    for a, b in zip(eager, exported, strict=True):
        assert torch.equal(a, b)
