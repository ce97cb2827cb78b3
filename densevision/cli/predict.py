"""``densevision predict``: run a trained Mask R-CNN on images, write COCO results (and overlay PNGs)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict",
        help="run a trained Mask R-CNN on images",
        description="Write a COCO results json (RLE masks, the data set's category ids) for a folder of images "
        "or one image. With --ann the image ids and file names come from that COCO json, so `densevision eval` "
        "can score the output; without it images get ids in sorted file-name order and OUT.images.json is "
        "written beside the results.",
    )
    p.add_argument("--checkpoint", required=True, help="run directory (its last.pt) or checkpoint file")
    p.add_argument("--images", required=True, help="image folder or one image file")
    p.add_argument("--ann", help="COCO json listing the images (file names relative to --images)")
    p.add_argument("--out", required=True, help="results json to write")
    p.add_argument("--viz", metavar="DIR", help="also write overlay PNGs here")
    p.add_argument("--score-thr", type=float, default=None,
                   help="minimum detection score (default: the checkpoint's, 0.05 unless changed)")
    p.add_argument("--viz-score-thr", type=float, default=0.5, help="minimum score drawn in overlays")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda")
    p.add_argument("--batch-size", type=int, default=2, help="images per forward pass (default 2)")
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="short side of the network input (default: the training size stored in the checkpoint)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Predict and report what was written."""
    from densevision.detection.predict import predict

    summary = predict(
        args.checkpoint, args.images, args.out, ann=args.ann, viz_dir=args.viz, score_thr=args.score_thr,
        viz_score_thr=args.viz_score_thr, device=args.device, batch_size=args.batch_size,
        input_size=args.input_size, progress=not args.no_progress,
    )
    print(f"{summary['num_detections']} detections on {summary['num_images']} images -> {summary['results']}")
    if summary["images_json"] is not None:
        print(f"image list: {summary['images_json']}")
    if summary["overlays"] is not None:
        print(f"overlays: {summary['overlays']}")
    return 0
