"""Choose the demo's detector-box score floor for the keypoint stage on a held-out tuning split.

The demo detector (``demo_detector.pt`` at its ``make demo`` input) finds boxes on a synthetic split generated with
another seed than the demo's (seed 1 instead of 0: no image shared with the training or validation split); the pose
network (the shipped ``demo_pose.pt`` or ``--pose``) then estimates keypoints in the boxes scoring at least each
floor. The table gives keypoint AP / AP50 / AP75 / AR per floor, and the ground-truth-box AP for reference.

    python benchmarks/demo_pose_box_score.py --scores 0.05 0.1 0.3 0.5 0.7 --images 40
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from tuning_split import add_tuning_arguments, tuning_recipe

from densevision.demo import ASSETS, DETECTOR_FILE, POSE_FILE, evaluate_pose, prepare_split
from densevision.detection.predict import predict

COLUMNS = ("AP", "AP50", "AP75", "AR")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scores", type=float, nargs="+", default=[0.05, 0.1, 0.3, 0.5, 0.7])
    parser.add_argument("--images", type=int, default=40, help="images in the tuning split (default 40)")
    add_tuning_arguments(parser)
    parser.add_argument("--detector", default=str(ASSETS / DETECTOR_FILE), help="detector weights")
    parser.add_argument("--pose", default=str(ASSETS / POSE_FILE), help="pose network weights")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    recipe = tuning_recipe(parser, args)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ann, images = prepare_split(Path(tmp), "val", args.images, recipe, progress=False)
        boxes = Path(tmp) / "detections.json"
        predict(Path(args.detector), images, boxes, ann=ann, device="cpu", input_size=recipe.detector_test_input,
                progress=False)
        print(f"{'boxes':>12} " + " ".join(f"{c:>6}" for c in COLUMNS))
        for score in [None, *args.scores]:
            stats = (evaluate_pose(Path(args.pose), ann, images, device="cpu") if score is None else
                     evaluate_pose(Path(args.pose), ann, images, boxes=boxes, min_score=score, device="cpu"))
            rows.append({"min_score": score, **{c: stats.get(c, 0.0) for c in COLUMNS}})
            label = "ground truth" if score is None else f">= {score:g}"
            print(f"{label:>12} " + " ".join(f"{stats.get(c, 0.0):>6.2f}" for c in COLUMNS), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
