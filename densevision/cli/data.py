"""``densevision data synth|check``: make the synthetic data set; validate a COCO file and its images."""

from __future__ import annotations

import argparse

from densevision.data.coco import read_json, validate_coco
from densevision.data.synthetic import generate


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("data", help="make or check data sets",
                                   description="Make the synthetic shapes data set or check a COCO data set.")
    sub = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)

    synth = sub.add_parser("synth", help="write the synthetic shapes data set",
                           description="Write OUT_DIR/{train,val}/*.png and OUT_DIR/annotations/instances_*.json.")
    synth.add_argument("out_dir", help="output folder")
    synth.add_argument("--train", type=int, default=200, help="training images (default 200)")
    synth.add_argument("--val", type=int, default=50, help="validation images (default 50)")
    synth.add_argument("--size", type=int, default=512, help="image side in pixels (default 512)")
    synth.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    synth.set_defaults(func=_synth)

    check = sub.add_parser("check", help="report every problem of a COCO instances file",
                           description="Validate a COCO instances json (and, with --images, its image files); "
                                       "prints every problem, exits 2 if there is any.")
    check.add_argument("ann", help="COCO instances json")
    check.add_argument("--images", help="image root the file names are relative to")
    check.set_defaults(func=_check)


def _synth(args: argparse.Namespace) -> int:
    paths = generate(args.out_dir, train=args.train, val=args.val, size=args.size, seed=args.seed)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    data = read_json(args.ann)
    problems = validate_coco(data, args.ann, args.images)
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 2
    print(f"{args.ann}: OK ({len(data['images'])} images, {len(data['annotations'])} annotations, "
          f"{len(data['categories'])} categories)")
    return 0
