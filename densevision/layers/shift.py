"""Token shifts of the shift-based MLPs: Cycle-FC (CycleMLP) and the axial shift (AS-MLP).

Both are exact, dependency-free rewrites of the upstream operators. Cycle-FC is a deformable convolution with
fixed integer offsets, which is nothing but a per-channel zero-filled shift followed by a 1×1 projection; the
AS-MLP shift (a CuPy kernel upstream) moves channel groups by −2…+2 positions. Each shift writes slices of its
input into one preallocated output (under ONNX export: one pad, slices and a concat, so the graph stays small
and sizes stay dynamic).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from timm.layers import register_notrace_function
from torch import nn

ShiftGroups = Sequence[tuple[slice, int]]
# TorchScript's form of a group: ``(start, stop, step, s)``, channels ``start:stop:step`` shifted by ``s``.
SliceGroups = list[tuple[int, int, int, int]]


def _copy_shifted(dst: torch.Tensor, src: torch.Tensor, s: int, dim: int) -> None:
    """``dst[p] = src[p + s]`` along ``dim``, zero where ``p + s`` falls outside."""
    n = src.shape[dim]
    a = min(abs(s), n)
    if s >= 0:
        dst.narrow(dim, 0, n - a).copy_(src.narrow(dim, a, n - a))
        dst.narrow(dim, n - a, a).zero_()
    else:
        dst.narrow(dim, a, n - a).copy_(src.narrow(dim, 0, n - a))
        dst.narrow(dim, 0, a).zero_()


def shift_slices(x: torch.Tensor, groups: SliceGroups, dim: int, channel_dim: int) -> torch.Tensor:
    """:func:`shift_channel_groups` in a form TorchScript compiles: ``groups`` as ``(start, stop, step, s)``."""
    out = torch.empty_like(x)
    for start, stop, step, s in groups:
        channels = torch.ops.aten.slice(x, channel_dim, start, stop, step)
        _copy_shifted(torch.ops.aten.slice(out, channel_dim, start, stop, step), channels, s, dim)
    return out


def gather_shifted(x: torch.Tensor, groups: ShiftGroups, dim: int, channel_dim: int) -> torch.Tensor:
    """The channel groups of ``x``, each shifted along axis ``dim`` by its own offset (zero-filled), concatenated
    along ``channel_dim`` in the order of ``groups``.

    ``groups`` holds ``(channels, s)`` pairs: ``channels`` is a slice (strided slices allowed) of axis
    ``channel_dim``, and output position ``p`` of those channels holds input position ``p + s``.
    """
    dim %= x.ndim
    channel_dim %= x.ndim
    lead = (slice(None),) * channel_dim
    if torch.onnx.is_in_onnx_export():
        n = x.shape[dim]
        reach = max(abs(s) for _, s in groups)
        padded = F.pad(x, [0, 0] * (x.ndim - 1 - dim) + [reach, reach])
        return torch.cat([padded[(*lead, ch)].narrow(dim, reach + s, n) for ch, s in groups], channel_dim)
    sizes = [len(range(x.shape[channel_dim])[ch]) for ch, _ in groups]
    shape = list(x.shape)
    shape[channel_dim] = sum(sizes)
    out = x.new_empty(shape)
    start = 0
    for (ch, s), size in zip(groups, sizes, strict=True):
        _copy_shifted(out.narrow(channel_dim, start, size), x[(*lead, ch)], s, dim)
        start += size
    return out


def shift_channel_groups(x: torch.Tensor, groups: ShiftGroups, dim: int, channel_dim: int) -> torch.Tensor:
    """Shift groups of channels of ``x`` along axis ``dim``, each by its own offset, zero-filled.

    ``groups`` holds ``(channels, s)`` pairs that partition axis ``channel_dim``: ``channels`` is a slice
    (strided slices allowed) and output position ``p`` of those channels holds input position ``p + s``, or
    zero where that falls outside. Channels keep their places.
    """
    dim %= x.ndim
    channel_dim %= x.ndim
    lead = (slice(None),) * channel_dim
    if torch.onnx.is_in_onnx_export():
        out = gather_shifted(x, groups, dim, channel_dim)
        order = [c for ch, _ in groups for c in range(int(x.shape[channel_dim]))[ch]]
        if order == sorted(order):
            return out
        inverse = sorted(range(len(order)), key=order.__getitem__)
        return out.index_select(channel_dim, torch.tensor(inverse, device=x.device))
    out = torch.empty_like(x)
    for ch, s in groups:
        _copy_shifted(out[(*lead, ch)], x[(*lead, ch)], s, dim)
    return out


@register_notrace_function  # size-dependent slicing: a leaf for torch.fx
def axial_shift(x: torch.Tensor, shift_size: int, dim: int, channel_dim: int = 1) -> torch.Tensor:
    """AS-MLP axial shift of ``x`` along spatial axis ``dim``; same shape out (``B×C×H×W`` by default, or
    channels-last ``B×H×W×C`` with ``channel_dim=3``).

    Channels are split like ``torch.chunk(x, shift_size, channel_dim)`` (groups of ``ceil(C / shift_size)``,
    the last one smaller); group ``g`` at position ``p`` reads position ``p + shift_size // 2 − g``, zero
    outside. Equal to upstream's pad → chunk → roll → concat → crop, in one pass over the data.
    """
    if shift_size % 2 != 1:
        raise ValueError(f"shift_size must be odd, got {shift_size}")
    channels = x.shape[channel_dim]
    size = (channels + shift_size - 1) // shift_size
    pad = shift_size // 2
    if torch.jit.is_scripting():
        slices = [(g * size, (g + 1) * size, 1, pad - g) for g in range((channels + size - 1) // size)]
        return shift_slices(x, slices, dim, channel_dim)
    groups = [(slice(g * size, (g + 1) * size), pad - g) for g in range(math.ceil(channels / size))]
    return shift_channel_groups(x, groups, dim, channel_dim)


def cycle_fc_offsets(channels: int, kernel_size: tuple[int, int]) -> torch.Tensor:
    """Upstream's ``offset`` buffer of a Cycle-FC layer: ``1×2C×1×1`` holding ``(dy, dx)`` per input channel.

    Channel ``i`` is displaced by ``(i + k // 2) % k − k // 2`` along the axis of length ``k`` > 1 (W for a
    ``(1, k)`` kernel, H for ``(k, 1)``), i.e. 0, +1, −1, 0, +1, … for ``k = 3``.
    """
    kh, kw = kernel_size
    if kh != 1 and kw != 1:
        raise ValueError(f"Cycle-FC kernel must be (1, k) or (k, 1), got {kernel_size}")
    k = kh * kw
    step = (torch.arange(channels) + k // 2) % k - k // 2
    zero = torch.zeros_like(step)
    dy, dx = (zero, step) if kh == 1 else (step, zero)
    return torch.stack([dy, dx], 1).reshape(1, 2 * channels, 1, 1).float()


class CycleFC(nn.Module):
    """Cycle fully-connected layer of CycleMLP on channels-last input: ``B×H×W×C_in -> B×H×W×C_out``.

    ``out[y, x] = bias + Σ_i weight[:, i] · in_i[y + dy_i, x + dx_i]`` (zero outside), with the per-channel
    offsets of :func:`cycle_fc_offsets`. Upstream computes this with ``deform_conv2d``; here the channels of
    each offset group are shifted with one strided slice copy and all are projected by one matrix product.
    Parameters and the persistent ``offset`` buffer keep upstream's names and shapes, so official checkpoints
    load unchanged.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: tuple[int, int], bias: bool = True) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = tuple(kernel_size)
        self.weight = nn.Parameter(torch.empty(out_channels, in_channels, 1, 1))
        self.bias = nn.Parameter(torch.empty(out_channels)) if bias else None
        self.register_buffer("offset", cycle_fc_offsets(in_channels, self.kernel_size))
        k = self.kernel_size[0] * self.kernel_size[1]
        self._dim = 2 if self.kernel_size[0] == 1 else 1
        self._groups = [(slice(r, None, k), (r + k // 2) % k - k // 2) for r in range(min(k, in_channels))]
        self._slice_groups = [(ch.start, in_channels, k, s) for ch, s in self._groups]
        # Channels 0, k, 2k, … have offset 0; the others move. Not in the state dict (derived from the shape).
        still = torch.zeros(in_channels)
        still[0::k] = 1
        self.register_buffer("still_mask", still, persistent=False)
        moved = [torch.arange(in_channels)[ch] for ch, _ in self._groups[1:]]
        self.register_buffer("moved_index", torch.cat(moved) if moved else torch.zeros(0, dtype=torch.long),
                             persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_channels)
            nn.init.uniform_(self.bias, -bound, bound)

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        """The shifted input ``B×H×W×C_in`` that the projection reads."""
        if torch.jit.is_scripting():
            return shift_slices(x, self._slice_groups, self._dim, -1)
        return shift_channel_groups(x, self._groups, self._dim, channel_dim=-1)

    def shift_moved(self, x: torch.Tensor) -> torch.Tensor:
        """Only the channels with a nonzero offset, shifted: ``B×H×W×M`` with channel ``j`` holding input channel
        ``moved_index[j]``. The still channels (``still_mask``) read ``x`` in place, so ``forward(x)`` equals
        ``x @ (W·still)ᵀ + shift_moved(x) @ W[:, moved_index]ᵀ + b``."""
        return gather_shifted(x, self._groups[1:], self._dim, channel_dim=-1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(self.shift(x), self.weight.flatten(1), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}"
