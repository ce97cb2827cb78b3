"""``densevision demo``: the project's main job on the embedded synthetic data (``make demo``)."""

from __future__ import annotations

import argparse

from densevision.demo import DemoRecipe, run_demo


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "demo", help="end-to-end demo: detector + boundary refinement on synthetic data",
        description="Generate the synthetic validation split, run the shipped Mask R-CNN at a lower input "
                    "resolution, refine its masks with the shipped BPR network, evaluate both (bbox, segm, "
                    "Boundary AP) and write metrics.json, report.md and figure.png.")
    parser.add_argument("--out", default="runs/demo", help="output folder (default runs/demo)")
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto (default)")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--train", action="store_true",
                      help="reproduce the shipped weights from scratch with the recorded recipe (long on a CPU)")
    mode.add_argument("--quick", action="store_true",
                      help="train both networks for a few iterations only, then run the pipeline (a smoke test)")
    parser.add_argument("--detector-input", type=int, default=None, metavar="PX",
                        help="short side of the detector's input (default: the recipe's, "
                             f"{DemoRecipe().detector_test_input}; the shipped detector was trained at "
                             f"{DemoRecipe().detector_input})")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
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
