"""``densevision bench``: forward throughput of zoo models, optionally against references in the same run."""

from __future__ import annotations

import argparse

from densevision.cli._types import add_device_argument, nonnegative_int, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``bench``."""
    parser.description = (
        "Time model(x) on a random batch: warm-up calls, then several timed runs; report the median as images "
        "per second. With --compare-timm the timm model of the same name (pretrained=False, this model's weights "
        "copied in where keys match) is timed alternately in the same run; with --compare-upstream (CycleMLP, "
        "AS-MLP; from a source checkout) so is upstream's formulation of the same model (deformable-convolution "
        "Cycle-FC, pad-chunk-roll axial shift)."
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="zoo model names")
    parser.add_argument("--refine", action="store_true",
                        help="also measure `bpr refine` instances/s on synthetic coarse masks (fastest of --runs/2 "
                             "passes)")
    parser.add_argument("--seg", action="store_true",
                        help="also measure UperNet segmenters (Swin-T, HRNet-W18-small; 150 classes, --size, default "
                             "512) with the head's share of the time, and sliding-window inference of a 1024x2048 "
                             "image (crop 512, stride 341) with batched windows against one window at a time")
    parser.add_argument("--refine-images", type=positive_int, default=20,
                        help="synthetic images for --refine (default 20)")
    parser.add_argument("--batch-size", "--batch", dest="batch_size", type=positive_int, default=8,
                        help="batch size (default 8)")
    parser.add_argument("--size", type=positive_int, help="square input size (default: the model's input size)")
    parser.add_argument("--threads", type=positive_int, help="torch.set_num_threads (default: torch's choice)")
    add_device_argument(parser)
    parser.add_argument("--amp", nargs="?", const="auto", default="off", choices=("off", "auto"),
                        help="mixed precision; bare --amp (auto): float16 autocast on CUDA, bfloat16 on the CPU")
    parser.add_argument("--warmup", type=nonnegative_int, default=2, help="untimed calls per model (default 2)")
    parser.add_argument("--runs", type=positive_int, default=5, help="timed calls per model (default 5)")
    parser.add_argument("--compare-timm", action="store_true", help="also time the timm model of the same name")
    parser.add_argument("--compare-upstream", action="store_true",
                        help="also time upstream's formulation with the same weights (CycleMLP, AS-MLP)")
    parser.add_argument("--out", "--json", dest="out", metavar="OUT.json", help="write all results to this json file")


def run(args: argparse.Namespace) -> int:
    """Benchmark each model (and ``bpr refine``, the segmenters), print one line each, write ``--out``."""
    import torch

    from densevision.bench import benchmark, benchmark_refine, format_refine, format_result, set_threads
    from densevision.errors import DenseVisionError
    from densevision.io import check_outputs, write_json

    if not args.models and not args.refine and not args.seg:
        raise DenseVisionError("name at least one model, or pass --refine or --seg")
    check_outputs({"--out": args.out}, {})
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    results = []
    for name in args.models:
        (result,) = benchmark(
            [name], threads=args.threads, batch=args.batch_size, size=args.size, device=device, amp=args.amp == "auto",
            warmup=args.warmup, runs=args.runs, compare_timm=args.compare_timm,
            compare_upstream=args.compare_upstream,
        )
        print(format_result(result), flush=True)
        results.append(result)
    if args.refine:
        set_threads(args.threads)
        result = benchmark_refine(images=args.refine_images, device=device, repeats=max(1, args.runs // 2))
        print(format_refine(result), flush=True)
        results.append({"bpr_refine": result})
    if args.seg:
        from densevision.bench_segmentation import benchmark_segmentation

        set_threads(args.threads)
        results += benchmark_segmentation(device=device, warmup=min(args.warmup, 1), runs=args.runs,
                                          size=args.size or 512)
    if args.out:
        write_json(args.out, results)
        print(f"results written to {args.out}")
    return 0
