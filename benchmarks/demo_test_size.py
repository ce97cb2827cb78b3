"""Choose the demo detector's inference input size on a held-out tuning split, not on the validation split.

The shipped detector (trained at 160² inputs) runs on a synthetic split generated with another seed than the
demo's (seed 1 instead of 0, so no image is shared with the training or validation split) at each input size,
and the shipped refiner (or ``--refiner``) refines its masks; the table gives COCO bbox / segm / Boundary AP of
both and the wall times. ``DemoRecipe.detector_test_input`` records the size chosen here.

    python benchmarks/demo_test_size.py --sizes 160 192 224 256 --images 100
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from densevision.data.coco import read_json
from densevision.data.synthetic import generate_split
from densevision.demo import IOU_TYPES, DemoRecipe, shipped_weights
from densevision.detection.predict import predict
from densevision.evaluation import evaluate
from densevision.refine.network import load_refine_net
from densevision.refine.pipeline import refine_results


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
    refiner = load_refine_net(args.refiner or weights["refiner"])
    recipe = DemoRecipe()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ann = generate_split(tmp, "val", args.images, size=recipe.image_size, seed=args.seed, progress=False)
        gt = read_json(ann)
        print(f"{'size':>5} {'stage':>8} {'bbox AP':>8} {'segm AP':>8} {'Boundary AP':>12} {'seconds':>8}")
        for size in args.sizes:
            out = Path(tmp) / f"results_{size}.json"
            start = time.perf_counter()
            predict(weights["detector"], Path(tmp) / "val", out, ann=ann, input_size=size, progress=False)
            stages = {"coarse": (read_json(out), time.perf_counter() - start)}
            start = time.perf_counter()
            refined = refine_results(gt["images"], Path(tmp) / "val", stages["coarse"][0], refiner,
                                     nms_iou=recipe.nms_iou, progress=False)
            stages["refined"] = (refined, time.perf_counter() - start)
            for stage, (results, seconds) in stages.items():
                metrics = evaluate(gt, results, IOU_TYPES)
                row = {"size": size, "stage": stage, **{t: metrics[t]["AP"] for t in IOU_TYPES}, "seconds": seconds}
                rows.append(row)
                print(f"{size:>5} {stage:>8} {row['bbox']:>8.2f} {row['segm']:>8.2f} {row['boundary']:>12.2f} "
                      f"{seconds:>8.1f}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
