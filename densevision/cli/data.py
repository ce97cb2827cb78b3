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
    parser.add_argument("--overwrite", action="store_true",
                        help="write over a data set already in OUT (by default that is refused)")
    add_progress_argument(parser)


def add_check_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``data check``."""
    parser.description = ("Validate a COCO instances json (and, with --images, its image files), or a label-map data "
                          "set: --images DIR --labels DIR --classes FILE, or --format ade20k|cityscapes --data ROOT "
                          "(every split); prints every problem, exits 2 if there is any.")
    parser.add_argument("ann", metavar="ANN.json", nargs="?", help="COCO instances json")
    parser.add_argument("--images", help="image root the file names are relative to (label maps: image folder)")
    parser.add_argument("--labels", metavar="DIR", help="label PNG folder (semantic label maps, matched by stem)")
    parser.add_argument("--classes", metavar="FILE", help="classes.json of --labels")
    parser.add_argument("--format", choices=("generic", "ade20k", "cityscapes"), default="generic",
                        help="label-map layout (default generic: --images, --labels, --classes)")
    parser.add_argument("--data", metavar="ROOT", help="ADE20K / Cityscapes root (with --format)")
    parser.add_argument("--reduce-zero-label", action="store_true", help="label 0 = 'other' (ignored), v -> v-1")
    parser.add_argument("--ignore-index", type=int, default=255, help="label value left out (default 255)")


def run_synth(args: argparse.Namespace) -> int:
    """Write the data set, print the annotation file of each split."""
    from densevision.data.synthetic import generate
    from densevision.errors import DenseVisionError
    from densevision.io import check_outputs

    if (args.out_dir is None) == (args.out_flag is None):
        raise DenseVisionError("give the output folder once: `data synth OUT` or `data synth --out OUT`")
    out = args.out_dir if args.out_flag is None else args.out_flag
    check_outputs({"OUT": out}, {}, folders=("OUT",))
    paths = generate(out, train=args.train, val=args.val, size=args.size, seed=args.seed, overwrite=args.overwrite,
                     progress=not args.no_progress)
    for split, path in paths.items():
        print(f"{split}: {path}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Print every problem (exit 2) or a one-line summary."""
    from densevision.data.coco import validate_coco
    from densevision.data.jsonio import read_json
    from densevision.errors import DenseVisionError

    if args.labels is not None or args.data is not None or args.format != "generic":
        return _check_label_maps(args)
    if args.ann is None:
        raise DenseVisionError("give a COCO instances json, or --images DIR --labels DIR --classes FILE")
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


def _check_label_maps(args: argparse.Namespace) -> int:
    """``data check --images --labels --classes`` or ``--format F --data ROOT``: every label-map problem (exit 2)
    or a summary line."""
    from densevision.data.labelmaps import label_map_problems
    from densevision.data.seg_formats import label_map_data
    from densevision.errors import DenseVisionError

    if args.ann is not None:
        raise DenseVisionError("label maps are checked without ANN.json: --images DIR --labels DIR --classes FILE, "
                               "or --format ade20k|cityscapes --data ROOT")
    if args.format == "generic":
        if args.images is None or args.labels is None or args.classes is None:
            raise DenseVisionError("label maps are checked with --images DIR --labels DIR --classes FILE "
                                   "(or --format ade20k|cityscapes --data ROOT)")
        where, sources = args.labels, {"train_images": args.images, "train_labels": args.labels}
    else:
        if args.images is not None or args.labels is not None:
            raise DenseVisionError(f"--format {args.format} is checked with --data ROOT (no --images, --labels)")
        where, sources = args.data, {}
    data = label_map_data(args.format, data=args.data, classes=args.classes, reduce_zero_label=args.reduce_zero_label,
                          **sources)
    problems = [line for split in data.splits() for line in label_map_problems(
        split, len(data.classes), reduce_zero=data.reduce_zero, ignore_index=args.ignore_index)]
    for line in problems:
        print(line)
    if problems:
        print(f"{len(problems)} problem(s) found")
        return 2
    count = sum(len(split.pairs) for split in data.splits())
    print(f"{where}: OK ({count} label maps, {len(data.classes)} classes)")
    return 0
