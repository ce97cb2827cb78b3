"""``densevision demo``: the project's main job on the embedded synthetic data (``make demo``)."""

from __future__ import annotations

import argparse

from densevision.cli._types import add_device_argument, add_progress_argument, positive_int


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``demo``."""
    parser.description = (
        "Generate the synthetic validation split, run the shipped Mask R-CNN at a lower input resolution, refine "
        "its masks with the shipped BPR network, evaluate both (bbox, segm, Boundary AP) and write metrics.json, "
        "report.md and figure.png.")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    add_device_argument(parser)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--train", action="store_true",
                      help="reproduce the shipped weights from scratch with the recorded recipe (long on a CPU)")
    mode.add_argument("--quick", action="store_true",
                      help="train both networks for a few iterations only, then run the pipeline (a smoke test)")
    parser.add_argument("--detector-input", type=positive_int, default=None, metavar="PX",
                        help="short side of the detector's input (default: the recipe's test input, which its "
                             "model card records)")
    add_progress_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Run the demo and print its coarse and refined metrics."""
    from densevision.demo import run_demo
    from densevision.io import check_outputs

    check_outputs({"--out": args.out}, {}, folders=("--out",))
    out = run_demo(args.out, train=args.train, quick=args.quick, device=args.device,
                   detector_input=args.detector_input, progress=not args.no_progress)
    for stage in ("coarse", "refined"):
        m = out["metrics"][stage]
        print(f"{stage:8s} bbox AP {m['bbox']['AP']:6.2f}  segm AP {m['segm']['AP']:6.2f}  "
              f"boundary AP {m['boundary']['AP']:6.2f}")
    print(f"report: {out['report']}")
    return 0
