"""Swin / ViT throughput against timm, whole models and single Swin blocks, same weights, same process.

    python benchmarks/bench_vs_timm.py --threads 2                 # swin_tiny and vit_small, batch 8, 224²
    python benchmarks/bench_vs_timm.py --models swin_base_patch4_window7_224 --runs 9 --json runs/bench.json

The block comparison times one stage-1 Swin block (56×56×96, window 7, plain and shifted) of each library,
timm's with this project's weights copied in, to show where the model-level difference comes from: timm
rolls, pads and partitions with copies, densevision gathers once in and once out (``WindowLayout``) and runs
``scaled_dot_product_attention`` with the relative position bias and shift mask as one additive mask.
"""

from __future__ import annotations

import argparse

import torch
from timm.models.swin_transformer import SwinTransformerBlock as TimmSwinBlock

from densevision.bench import benchmark, copy_matching_weights, time_models
from densevision.io import write_json
from densevision.models.swin import SwinTransformerBlock


def compare_blocks(batch: int, runs: int) -> list[dict]:
    """Time a stage-1 Swin block of both libraries on ``batch×56×56×96``, W-MSA and SW-MSA."""
    rows = []
    for shift in (0, 3):
        ours = SwinTransformerBlock(96, 3, window_size=7, shift_size=shift).eval()
        theirs = TimmSwinBlock(96, (56, 56), num_heads=3, window_size=7, shift_size=shift).eval()
        copy_matching_weights(ours, theirs)
        x = torch.randn(batch, 56, 56, 96)
        with torch.inference_mode():
            diff = (ours(x) - theirs(x)).abs().max().item()
        mine, ref = time_models([ours, theirs], x, warmup=2, runs=runs)
        rows.append({"block": "SW-MSA" if shift else "W-MSA", "densevision_ms": mine.median_s * 1e3,
                     "timm_ms": ref.median_s * 1e3, "ratio": ref.median_s / mine.median_s, "max_abs_diff": diff})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["swin_tiny_patch4_window7_224", "vit_small_patch16_224"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    results = benchmark(args.models, threads=args.threads, batch=args.batch, runs=args.runs, compare_timm=True)
    print(f"batch {args.batch}, fp32, {args.threads} threads, median of {args.runs} runs\n")
    print("| model | densevision img/s | timm img/s | ratio | max abs diff |\n|---|---|---|---|---|")
    for r in results:
        print(f"| {r['model']} | {r['densevision']['img_per_s']:.2f} | {r['timm']['img_per_s']:.2f} | "
              f"{r['ratio']:.2f}x | {r['max_abs_diff']:.1e} |")
    blocks = compare_blocks(args.batch, args.runs)
    print("\n| Swin stage-1 block | densevision ms | timm ms | speed-up | max abs diff |\n|---|---|---|---|---|")
    for b in blocks:
        print(f"| {b['block']} | {b['densevision_ms']:.1f} | {b['timm_ms']:.1f} | {b['ratio']:.2f}x | "
              f"{b['max_abs_diff']:.1e} |")
    if args.json:
        write_json(args.json, {"models": results, "blocks": blocks})


if __name__ == "__main__":
    main()
