"""``densevision detect eval`` (also ``densevision eval``): COCO bbox / segm / Boundary / keypoint AP of a
results json against a ground-truth json."""

from __future__ import annotations

import argparse

from densevision.cli._types import finite_float

# densevision.evaluation.coco.ALL_IOU_TYPES, without importing it
ALL_IOU_TYPES = ("bbox", "segm", "boundary", "keypoints")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``eval``."""
    parser.description = (
        "Evaluate COCO results (a json list of {image_id, category_id, score, bbox, segmentation or keypoints}) "
        "against COCO ground truth; print a table of AP in percent and optionally write all COCO metrics per IoU "
        "type as json."
    )
    parser.add_argument("--gt", "--ann", dest="gt", required=True, metavar="GT.json", help="COCO ground-truth json")
    parser.add_argument("--results", required=True, metavar="RES.json", help="COCO results json")
    parser.add_argument("--iou-types", nargs="+", choices=ALL_IOU_TYPES, default=None,
                        help="default: what the results contain (boxes only: bbox; with segmentation: bbox segm "
                             "boundary; with keypoints: keypoints OKS AP)")
    parser.add_argument("--kpt-sigmas", nargs="+", type=finite_float, metavar="SIGMA",
                        help="OKS sigmas, one per keypoint, for keypoint categories whose entry has no "
                             "'kpt_sigmas' (COCO's 17 person keypoints have theirs built in)")
    parser.add_argument("--dilation-ratio", type=finite_float, default=0.02,
                        help="boundary band width as a fraction of the image diagonal (default 0.02; Cityscapes "
                             "0.005)")
    parser.add_argument("--per-class", action="store_true",
                        help="also print AP, AP50 and AP75 per category (in the json under 'per_class')")
    parser.add_argument("--out", metavar="METRICS.json", help="write the metrics here as json")


def run(args: argparse.Namespace) -> int:
    """Evaluate, print the table (and the per-class tables), write ``--out``."""
    from densevision.evaluation.coco import evaluate, format_per_class, format_table
    from densevision.io import check_outputs, write_json

    check_outputs({"--out": args.out}, {"--gt": args.gt, "--results": args.results})
    per_class = {} if args.per_class else None
    metrics = evaluate(args.gt, args.results, args.iou_types, dilation_ratio=args.dilation_ratio,
                       kpt_sigmas=args.kpt_sigmas, per_class=per_class)
    print(format_table(metrics))
    if per_class is not None:
        print(f"\n{format_per_class(per_class)}")
    if args.out:
        write_json(args.out, metrics if per_class is None else {**metrics, "per_class": per_class})
        print(f"metrics written to {args.out}")
    return 0
