"""Choose the demo detector's inference input size on a held-out tuning split, not on the validation split.

The demo pipeline (:func:`densevision.demo.run_pipeline`: shipped detector, trained at 160² inputs, then the
shipped refiner or ``--refiner``) runs on a synthetic split generated with another seed than the demo's (seed 1
instead of 0, so no image is shared with the training or validation split), once per detector input size; the
table gives COCO bbox / segm / Boundary AP of the coarse and refined masks and the wall times.
``DemoRecipe.detector_test_input`` records the size chosen here.

    python benchmarks/demo_test_size.py --sizes 160 192 224 256 --images 100
"""

from __future__ import annotations

import argparse
import json
import tempfile
from dataclasses import replace
from pathlib import Path

import torch

from densevision.demo import IOU_TYPES, DemoRecipe, run_pipeline, shipped_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224, 256, 288, 320])
    parser.add_argument("--images", type=int, default=100, help="images in the tuning split (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="tuning split seed; the demo's splits use 0")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--refiner", help="refiner checkpoint (default: the shipped one)")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    if args.seed == DemoRecipe().seed:
        parser.error(f"--seed {args.seed} is the demo's own seed; the tuning split must differ from it")
    torch.set_num_threads(args.threads)
    weights = shipped_weights()
    if args.refiner:
        weights["refiner"] = Path(args.refiner)
    rows = []
    print(f"{'size':>5} {'stage':>8} {'bbox AP':>8} {'segm AP':>8} {'Boundary AP':>12} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            recipe = replace(DemoRecipe(), seed=args.seed, val_images=args.images, detector_test_input=size)
            out = run_pipeline(tmp, weights, recipe=recipe, device="cpu", progress=False)
            seconds = {"coarse": out["timings"]["detector_s"], "refined": out["timings"]["refine_s"]}
            for stage, metrics in out["metrics"].items():
                row = {"size": size, "stage": stage, **{t: metrics[t]["AP"] for t in IOU_TYPES},
                       "seconds": seconds[stage]}
                rows.append(row)
                print(f"{size:>5} {stage:>8} {row['bbox']:>8.2f} {row['segm']:>8.2f} {row['boundary']:>12.2f} "
                      f"{row['seconds']:>8.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
