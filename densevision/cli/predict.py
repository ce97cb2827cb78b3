"""``densevision detect predict`` (also ``densevision predict``): run a trained detector on images, write COCO
results (and overlay PNGs)."""

from __future__ import annotations

import argparse
from pathlib import Path

from densevision.cli._types import (
    add_device_argument,
    add_progress_argument,
    add_trust_argument,
    positive_int,
    probability,
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``predict``."""
    parser.description = (
        "Write a COCO results json (RLE masks, the data set's category ids; a Keypoint R-CNN adds each detection's "
        "keypoints [x, y, score] x K of its category) for a folder of images or one image. "
        "With --ann the image ids and file names come from that COCO json, so `densevision detect eval` can score "
        "the output; without it images get ids in sorted file-name order and OUT.images.json is written beside "
        "the results."
    )
    parser.add_argument("--checkpoint", required=True, metavar="RUN_DIR|FILE",
                        help="run directory (its last.pt) or checkpoint file")
    parser.add_argument("--images", required=True, help="image folder or one image file")
    parser.add_argument("--ann", metavar="ANN.json", help="COCO json listing the images (file names relative to "
                        "--images)")
    parser.add_argument("--out", required=True, metavar="RES.json", help="results json to write")
    parser.add_argument("--viz", metavar="DIR", help="also write overlay PNGs here")
    parser.add_argument("--score-thr", type=probability, default=None,
                        help="minimum detection score (default: the checkpoint's, 0.05 unless changed)")
    parser.add_argument("--viz-score-thr", type=probability, default=0.5, help="minimum score drawn in overlays")
    add_device_argument(parser)
    parser.add_argument("--batch-size", "--batch", dest="batch_size", type=positive_int, default=2,
                        help="images per forward pass (default 2)")
    parser.add_argument("--input-size", type=positive_int, default=None, metavar="PX",
                        help="short side of the network input (default: the training size stored in the checkpoint)")
    add_trust_argument(parser)
    add_progress_argument(parser)


def _guard(args: argparse.Namespace) -> None:
    """Refuse outputs that are inputs: the checkpoint, --ann, --images (or an image file inside it)."""
    from densevision.data.images import IMAGE_EXTENSIONS
    from densevision.data.results import images_json_path
    from densevision.engine.checkpoint import find_checkpoint
    from densevision.io import check_outputs

    outputs = {"--out": args.out, "--viz": args.viz}
    if args.ann is None and Path(args.out).name:
        outputs["--out's image list"] = images_json_path(args.out)
    inputs = {"--checkpoint": find_checkpoint(args.checkpoint),
              "--images": args.images, "--ann": args.ann}
    images = Path(args.images)
    if images.is_dir():
        for out in map(Path, filter(None, outputs.values())):
            if out.suffix.lower() in IMAGE_EXTENSIONS and out.exists() and out.parent.resolve() == images.resolve():
                inputs[f"--images (image {out.name})"] = out
    check_outputs(outputs, inputs, folders=("--viz",))


def run(args: argparse.Namespace) -> int:
    """Predict and report what was written."""
    from densevision.detection.predict import predict

    _guard(args)
    summary = predict(
        args.checkpoint, args.images, args.out, ann=args.ann, viz_dir=args.viz, score_thr=args.score_thr,
        viz_score_thr=args.viz_score_thr, device=args.device, batch_size=args.batch_size,
        input_size=args.input_size, progress=not args.no_progress, trust_checkpoint=args.trust_checkpoint,
    )
    print(f"{summary['num_detections']} detections on {summary['num_images']} images -> {summary['results']}")
    if summary["images_json"] is not None:
        print(f"image list: {summary['images_json']}")
    if summary["overlays"] is not None:
        print(f"overlays: {summary['overlays']}")
    return 0
