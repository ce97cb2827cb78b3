"""Choose the demo segmenter's inference input size on a held-out tuning split, not on the validation split.

The segmenter (the shipped ``demo_segmenter.pt`` or ``--weights``) runs on a synthetic split generated with
another seed than the demo's (seed 1 instead of 0: no image shared with the training or validation split), once
per input size (longer side; the logits are resized back to 512²); the table gives mIoU / aAcc / mAcc and the
wall time. ``SegDemoRecipe.test_input`` records the size chosen here.

    python benchmarks/demo_seg_test_size.py --sizes 256 384 512 --images 20
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from tuning_split import add_tuning_arguments, tuning_recipe

from densevision.data.jsonio import read_json
from densevision.demo import ASSETS, SEGMENTER_FILE, evaluate_segmenter, prepare_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 384, 512])
    parser.add_argument("--images", type=int, default=20, help="images in the tuning split (default 20)")
    add_tuning_arguments(parser)
    parser.add_argument("--weights", default=str(ASSETS / SEGMENTER_FILE), help="segmenter weights")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    recipe = tuning_recipe(parser, args)
    rows = []
    print(f"{'size':>5} {'mIoU':>7} {'aAcc':>7} {'mAcc':>7} {'seconds':>8}")
    with tempfile.TemporaryDirectory() as tmp:
        ann, images = prepare_split(Path(tmp), "val", args.images, recipe, labels=True, progress=False)
        gt = read_json(ann)
        for size in args.sizes:
            start = time.perf_counter()
            out = evaluate_segmenter(Path(args.weights), gt, images, Path(tmp) / "labels" / "val", input_size=size,
                                     device="cpu", progress=False)
            row = {"size": size, **{k: out[k] for k in ("mIoU", "aAcc", "mAcc")},
                   "seconds": time.perf_counter() - start}
            rows.append(row)
            print(f"{size:>5} {row['mIoU']:>7.2f} {row['aAcc']:>7.2f} {row['mAcc']:>7.2f} {row['seconds']:>8.1f}",
                  flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
