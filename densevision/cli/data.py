"""``densevision data synth|check``: make the synthetic data set; validate a COCO file and its images."""

from __future__ import annotations

import argparse

from densevision.cli._types import add_progress_argument, int_at_least, nonnegative_int

MIN_SYNTH_SIZE = 64  # densevision.data.synthetic draws shapes of at least this image side


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``data synth``."""
    parser.description = "Write OUT/{train,val}/*.png and OUT/annotations/instances_{train,val}.json."
    parser.add_argument("out_dir", nargs="?", metavar="OUT", help="output folder (or --out)")
    parser.add_argument("--out", dest="out_flag", metavar="OUT", help="output folder")
    parser.add_argument("--train", type=nonnegative_int, default=200, help="training images (default 200)")
    parser.add_argument("--val", type=nonnegative_int, default=50, help="validation images (default 50)")
    parser.add_argument("--size", type=int_at_least(MIN_SYNTH_SIZE), default=512,
                        help=f"image side in pixels, at least {MIN_SYNTH_SIZE} (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="random seed; same seed, same bytes (default 0)")
    add_progress_argument(parser)


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``data check``."""
    parser.description = ("Validate a COCO instances json (and, with --images, its image files); prints every "
                          "problem, exits 2 if there is any.")
    parser.add_argument("ann", metavar="ANN.json", help="COCO instances json")
    parser.add_argument("--images", help="image root the file names are relative to")


def run_synth(args: argparse.Namespace) -> int:
    """Write the data set, print the annotation file of each split."""
    from densevision.data.synthetic import generate
    from densevision.errors import DenseVisionError
    from densevision.io import check_outputs

    if (args.out_dir is None) == (args.out_flag is None):
        raise DenseVisionError("give the output folder once: `data synth OUT` or `data synth --out OUT`")
    out = args.out_dir if args.out_flag is None else args.out_flag
    check_outputs({"OUT": out}, {}, folders=("OUT",))
    paths = generate(out, train=args.train, val=args.val, size=args.size, seed=args.seed,
                     progress=not args.no_progress)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Print every problem (exit 2) or a one-line summary."""
    from densevision.data.coco import read_json, validate_coco

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
