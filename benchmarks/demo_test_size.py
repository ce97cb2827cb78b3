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

from tuning_split import add_tuning_arguments, tuning_recipe

from densevision.demo import IOU_TYPES, run_pipeline, shipped_weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[160, 192, 224, 256, 288, 320])
    parser.add_argument("--images", type=int, default=100, help="images in the tuning split (default 100)")
    add_tuning_arguments(parser, threads=2)
    parser.add_argument("--refiner", help="refiner checkpoint (default: the shipped one)")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    tuning = tuning_recipe(parser, args)
    # The detector and refiner only: the semantic and keypoint stages do not depend on the detector's input size.
    weights = {k: v for k, v in shipped_weights().items() if k in ("detector", "refiner")}
    if args.refiner:
        weights["refiner"] = Path(args.refiner)
    rows = []
    print(f"{'size':>5} {'stage':>8} {'bbox AP':>8} {'segm AP':>8} {'Boundary AP':>12} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            recipe = replace(tuning, val_images=args.images, detector_test_input=size)
            out = run_pipeline(tmp, weights, recipe=recipe, device="cpu", progress=False)
            seconds = {"coarse": out["timings"]["detector_s"], "refined": out["timings"]["refine_s"]}
            for stage in ("coarse", "refined"):
                metrics = out["metrics"][stage]
                row = {"size": size, "stage": stage, **{t: metrics[t]["AP"] for t in IOU_TYPES},
                       "seconds": seconds[stage]}
                rows.append(row)
                print(f"{size:>5} {stage:>8} {row['bbox']:>8.2f} {row['segm']:>8.2f} {row['boundary']:>12.2f} "
                      f"{row['seconds']:>8.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
