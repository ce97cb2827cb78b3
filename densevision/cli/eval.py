"""``densevision detect eval`` (also ``densevision eval``): COCO bbox / segm / Boundary / keypoint AP of a
results json against a ground-truth json."""

from __future__ import annotations

import argparse

from densevision.cli._types import finite_float

# densevision.evaluation.coco.IOU_TYPES (the default) and ALL_IOU_TYPES, without importing it
IOU_TYPES = ("bbox", "segm", "boundary")
ALL_IOU_TYPES = (*IOU_TYPES, "keypoints")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``eval``."""
    parser.description = (
        "Evaluate COCO results (a json list of {image_id, category_id, score, bbox, segmentation}) against COCO "
        "ground truth; print a table of AP in percent and optionally write all 12 COCO metrics per IoU type as "
        "json."
    )
    parser.add_argument("--gt", "--ann", dest="gt", required=True, metavar="GT.json", help="COCO ground-truth json")
    parser.add_argument("--results", required=True, metavar="RES.json", help="COCO results json")
    parser.add_argument("--iou-types", nargs="+", choices=ALL_IOU_TYPES, default=list(IOU_TYPES),
                        help="default: bbox segm boundary; keypoints: OKS AP (results with 'keypoints')")
    parser.add_argument("--kpt-sigmas", nargs="+", type=finite_float, metavar="SIGMA",
                        help="OKS sigmas, one per keypoint, for keypoint categories whose entry has no "
                             "'kpt_sigmas' (COCO's 17 person keypoints have theirs built in)")
    parser.add_argument("--dilation-ratio", type=finite_float, default=0.02,
                        help="boundary band width as a fraction of the image diagonal (default 0.02; Cityscapes "
                             "0.005)")
    parser.add_argument("--out", metavar="METRICS.json", help="write the metrics here as json")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table, write ``--out``."""
    from densevision.evaluation.coco import evaluate, format_table
    from densevision.io import check_outputs, write_json

    check_outputs({"--out": args.out}, {"--gt": args.gt, "--results": args.results})
    metrics = evaluate(args.gt, args.results, args.iou_types, dilation_ratio=args.dilation_ratio,
                       kpt_sigmas=args.kpt_sigmas)
    print(format_table(metrics))
    if args.out:
        write_json(args.out, metrics)
        print(f"metrics written to {args.out}")
    return 0
