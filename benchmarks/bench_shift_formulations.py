"""CPU throughput of densevision's shift formulations against upstream's, with the same weights, in one run.

Reference formulations (upstream's operators, written here for comparison only):
- CycleMLP: Cycle-FC as ``torchvision.ops.deform_conv2d`` with the official offset layout;
- AS-MLP: the axial shift as pad → chunk → roll → concat → crop, with every GroupNorm materialised.

Each reference model runs on the fast model's modules or a deep copy of them (the same weights), the outputs
are compared, and the timings of the two models are interleaved so that CPU contention hits both alike.

    OMP_NUM_THREADS=2 python benchmarks/bench_shift_formulations.py --batch 8 --size 224 --threads 2
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import deform_conv2d

import densevision
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


def deform_cyclemlp(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (same weights) whose token mixers run upstream's deformable-convolution formulation."""
    model = copy.deepcopy(model)
    for block in [m for m in model.modules() if hasattr(m, "attn")]:
        block.attn = DeformCycleMixer(block.attn)
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
        y = s.actn(s.norm1(s.conv1(blk.norm1(x))))
        y_lr = s.actn(s.conv2_1(pad_chunk_roll_shift(y, s.shift_size, 3)))
        y_td = s.actn(s.conv2_2(pad_chunk_roll_shift(y, s.shift_size, 2)))
        x = x + s.conv3(s.norm2(y_lr + y_td))
        return x + blk.mlp.fc2(blk.mlp.act(blk.mlp.fc1(blk.norm2(x))))

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


def throughput(models: dict[str, nn.Module], x: torch.Tensor, repeats: int) -> dict[str, tuple[float, float]]:
    """Images per second of each model as (best, median) over ``repeats`` interleaved timed forwards after a
    warm-up; on a shared machine the best run is the one least disturbed by other processes."""
    times: dict[str, list[float]] = {name: [] for name in models}
    with torch.inference_mode():
        for model in models.values():
            model(x)
        for _ in range(repeats):
            for name, model in models.items():
                start = time.perf_counter()
                model(x)
                times[name].append(time.perf_counter() - start)
    return {name: (x.shape[0] / min(t), x.shape[0] / statistics.median(t)) for name, t in times.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["cyclemlp_b1", "asmlp_tiny"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 3, args.size, args.size)
    print(f"batch {args.batch}, {args.size}x{args.size}, fp32, {args.threads} threads, torch {torch.__version__}")
    for name in args.models:
        fast = densevision.create_model(name).eval()
        if name.startswith("cyclemlp"):
            slow, label = deform_cyclemlp(fast), "deform_conv2d"
        else:
            slow, label = ReferenceASMLP(fast).eval(), "pad-chunk-roll"
        with torch.inference_mode():
            diff = (fast(x) - slow(x)).abs().max().item()
        ips = throughput({"fast": fast, "reference": slow}, x, args.repeats)
        (fast_best, fast_med), (ref_best, ref_med) = ips["fast"], ips["reference"]
        print(
            f"{name}: fast {fast_best:.2f} img/s (median {fast_med:.2f}), {label} {ref_best:.2f} img/s "
            f"(median {ref_med:.2f}), ratio {fast_best / ref_best:.2f}x (medians {fast_med / ref_med:.2f}x), "
            f"max abs diff {diff:.2e}"
        )


if __name__ == "__main__":
    main()
