"""Upstream's formulations of CycleMLP and AS-MLP, for speed comparisons only (never part of the library).

- CycleMLP: Cycle-FC as ``torchvision.ops.deform_conv2d`` with the official offset layout, the three branches
  materialised and mixed as upstream does, the channel MLP as plain ``fc1 → GELU → fc2``;
- AS-MLP: NCHW with every 1×1 layer a ``Conv2d``, every GroupNorm and GELU materialised, the axial shift as
  pad → chunk → roll → concat → crop.

:func:`upstream_model` wraps a densevision model's modules (the same weights) in that formulation.
``densevision bench MODEL --compare-upstream`` times both in one run and reports the ratio.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

from densevision.layers import CycleFC


def deform_cycle_fc(fc: CycleFC, x: torch.Tensor) -> torch.Tensor:
    """Cycle-FC as upstream computes it: a deformable convolution with fixed offsets (NHWC in and out)."""
    b, h, w, _ = x.shape
    offset = fc.offset.expand(b, -1, h, w)
    return deform_conv2d(x.permute(0, 3, 1, 2), offset, fc.weight, fc.bias).permute(0, 2, 3, 1)


class DeformCycleMixer(nn.Module):
    """The CycleMLP token mixer as upstream writes it (deformable convolutions, materialised branches)."""

    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.mixer
        b, _, _, c = x.shape
        h, w, cc = deform_cycle_fc(m.sfc_h, x), deform_cycle_fc(m.sfc_w, x), m.mlp_c(x)
        a = m.reweight((h + w + cc).mean((1, 2))).reshape(b, c, 3).permute(2, 0, 1).softmax(dim=0)
        a = a[:, :, None, None, :]
        return m.proj(h * a[0] + w * a[1] + cc * a[2])


class PlainMlp(nn.Module):
    """Upstream's channel MLP: ``fc2(gelu(fc1(x)))`` as separate ops."""

    def __init__(self, mlp: nn.Module) -> None:
        super().__init__()
        self.mlp = mlp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.mlp.fc2(F.gelu(self.mlp.fc1(x)))  # upstream's nn.GELU: a new buffer per call


def deform_cyclemlp(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights) run as upstream: deformable-convolution token mixers, plain MLPs."""
    model = copy.deepcopy(model)
    for block in [m for m in model.modules() if hasattr(m, "attn")]:
        block.attn = DeformCycleMixer(block.attn)
        block.mlp = PlainMlp(block.mlp)
    return model


def pad_chunk_roll_shift(x: torch.Tensor, shift_size: int, dim: int) -> torch.Tensor:
    """Upstream's pure-PyTorch axial shift: pad, chunk channels, roll each chunk, concat, crop."""
    _, _, h, w = x.shape
    pad = shift_size // 2
    x = F.pad(x, (pad, pad, pad, pad))
    chunks = torch.chunk(x, shift_size, 1)
    x = torch.cat([torch.roll(c, s, dim) for c, s in zip(chunks, range(-pad, pad + 1), strict=False)], 1)
    return x.narrow(2, pad, h).narrow(3, pad, w)


class ReferenceASMLP(nn.Module):
    """AS-MLP run as upstream writes it (every norm materialised, pad-chunk-roll shift) on ``model``'s modules."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    @staticmethod
    def block(blk: nn.Module, x: torch.Tensor) -> torch.Tensor:
        s = blk.axial_shift
        y = F.gelu(s.norm1(s.conv1(blk.norm1(x))))  # upstream's nn.GELU: a new buffer per call
        y_lr = F.gelu(s.conv2_1(pad_chunk_roll_shift(y, s.shift_size, 3)))
        y_td = F.gelu(s.conv2_2(pad_chunk_roll_shift(y, s.shift_size, 2)))
        x = x + s.conv3(s.norm2(y_lr + y_td))
        return x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(blk.norm2(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.patch_embed.norm(m.patch_embed.proj(x))
        for layer in m.layers:
            for blk in layer.blocks:
                x = self.block(blk, x)
            if layer.downsample is not None:
                d = layer.downsample
                x = torch.cat([x[:, :, 0::2, 0::2], x[:, :, 1::2, 0::2], x[:, :, 0::2, 1::2], x[:, :, 1::2, 1::2]], 1)
                x = d.reduction(d.norm(x))
        return m.head(m.norm(x).mean((2, 3)))


FORMULATIONS = {"cyclemlp": "deform_conv2d", "asmlp": "pad-chunk-roll"}


def upstream_model(name: str, model: nn.Module) -> tuple[nn.Module, str]:
    """``(upstream formulation of model, its label)`` for a CycleMLP or AS-MLP zoo model ``name``."""
    if name.startswith("cyclemlp"):
        return deform_cyclemlp(model).eval(), FORMULATIONS["cyclemlp"]
    if name.startswith("asmlp"):
        return ReferenceASMLP(model).eval(), FORMULATIONS["asmlp"]
    raise ValueError(f"{name}: no upstream formulation here (CycleMLP and AS-MLP only)")
