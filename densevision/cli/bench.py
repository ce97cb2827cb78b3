"""``densevision bench``: forward throughput of zoo models, optionally against references in the same run."""

from __future__ import annotations

import argparse

from densevision.bench import benchmark, benchmark_refine, format_refine, format_result, set_threads
from densevision.errors import DenseVisionError
from densevision.io import write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``bench`` subcommand."""
    parser = subparsers.add_parser(
        "bench",
        help="measure forward throughput (img/s), optionally against timm / upstream formulations",
        description="Time model(x) on a random batch: warm-up calls, then several timed runs; report the "
        "median as images per second. With --compare-timm the timm model of the same name (pretrained=False, "
        "this model's weights copied in where keys match) is timed alternately in the same run; with "
        "--compare-upstream (CycleMLP, AS-MLP; from a source checkout) so is upstream's formulation of the same "
        "model (deformable-convolution Cycle-FC, pad-chunk-roll axial shift).",
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="zoo model names")
    parser.add_argument(
        "--refine",
        action="store_true",
        help="also measure `bpr refine` instances/s on synthetic coarse masks (fastest of --runs/2 passes)",
    )
    parser.add_argument("--refine-images", type=int, default=20, help="synthetic images for --refine (default 20)")
    parser.add_argument("--batch", type=int, default=8, help="batch size (default 8)")
    parser.add_argument("--size", type=int, help="square input size (default: the model's input size)")
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's choice)")
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda[:N]")
    parser.add_argument("--amp", action="store_true", help="autocast (float16 on CUDA, bfloat16 on CPU)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed calls per model (default 2)")
    parser.add_argument("--runs", type=int, default=5, help="timed calls per model (default 5)")
    parser.add_argument("--compare-timm", action="store_true", help="also time the timm model of the same name")
    parser.add_argument(
        "--compare-upstream",
        action="store_true",
        help="also time upstream's formulation with the same weights (CycleMLP, AS-MLP)",
    )
    parser.add_argument("--json", metavar="OUT", help="write all results to this json file")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Benchmark each model (and ``bpr refine``), print one line each, write ``--json``."""
    if not args.models and not args.refine:
        raise DenseVisionError("name at least one model, or pass --refine")
    results = []
    for name in args.models:
        (result,) = benchmark(
            [name],
            threads=args.threads,
            batch=args.batch,
            size=args.size,
            device=args.device,
            amp=args.amp,
            warmup=args.warmup,
            runs=args.runs,
            compare_timm=args.compare_timm,
            compare_upstream=args.compare_upstream,
        )
        print(format_result(result), flush=True)
        results.append(result)
    if args.refine:
        set_threads(args.threads)
        result = benchmark_refine(images=args.refine_images, device=args.device, repeats=max(1, args.runs // 2))
        print(format_refine(result), flush=True)
        results.append({"bpr_refine": result})
    if args.json:
        write_json(args.json, results)
        print(f"results written to {args.json}")
    return 0
