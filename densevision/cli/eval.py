"""``densevision eval``: COCO bbox / segm / Boundary AP of a results json against a ground-truth json."""

from __future__ import annotations

import argparse

from densevision.evaluation.coco import IOU_TYPES, evaluate, format_table
from densevision.io import write_json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``eval`` subcommand."""
    parser = subparsers.add_parser(
        "eval",
        help="COCO bbox / segm / boundary AP of a results json",
        description="Evaluate COCO results (a json list of {image_id, category_id, score, bbox, "
        "segmentation}) against COCO ground truth; print a table of AP in percent and optionally write "
        "all 12 COCO metrics per IoU type as json.",
    )
    parser.add_argument("--gt", required=True, help="COCO ground-truth json")
    parser.add_argument("--results", required=True, help="COCO results json")
    parser.add_argument(
        "--iou-types", nargs="+", choices=IOU_TYPES, default=list(IOU_TYPES), help="default: all three"
    )
    parser.add_argument(
        "--dilation-ratio",
        type=float,
        default=0.02,
        help="boundary band width as a fraction of the image diagonal (default 0.02; Cityscapes 0.005)",
    )
    parser.add_argument("--out", help="write the metrics here as json")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write ``--out``."""
    metrics = evaluate(args.gt, args.results, args.iou_types, dilation_ratio=args.dilation_ratio)
    print(format_table(metrics))
    if args.out:
        write_json(args.out, metrics)
        print(f"metrics written to {args.out}")
    return 0
