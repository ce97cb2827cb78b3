"""``densevision seg train|predict|eval``: semantic segmentation (UperNet, Semantic FPN, HRNetV2 heads).

No heavy import at module level: the flags come from the torch-free config module.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from densevision.cli._spec import Group, Verb
from densevision.cli._training import add_training_arguments, run_training
from densevision.cli._types import (
    add_device_argument,
    add_progress_argument,
    add_trust_argument,
    positive_float,
    positive_int,
)

SEG = Group(
    "seg", "semantic segmentation: train, predict, eval",
    "Semantic segmentation on label-map data (images + single-channel PNGs of class indices, 255 = ignore): "
    "train a segmenter on any zoo or timm: backbone, write label PNGs, score them (mIoU as mmsegmentation).",
    (
        Verb("train", "seg", "train a segmenter (UperNet / Semantic FPN / HRNetV2 head)", "add_train_arguments",
             "run_train"),
        Verb("predict", "seg", "write a label PNG per image with a trained segmenter", "add_predict_arguments",
             "run_predict"),
        Verb("eval", "seg", "mIoU / aAcc / mAcc of label PNGs against ground-truth label PNGs",
             "add_eval_arguments", "run_eval"),
    ),
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of ``seg train``: one per leaf of ``SegTrainConfig`` plus run directory, device, progress."""
    from densevision.segmentation.config import SegTrainConfig

    add_training_arguments(parser, SegTrainConfig)


def run_train(args: argparse.Namespace) -> int:
    """Train, then print where the run is and its last evaluation."""
    from densevision.engine.config import config_from_args
    from densevision.segmentation.config import SegTrainConfig
    from densevision.segmentation.train import train_segmenter

    config = config_from_args(args, SegTrainConfig)
    data = config.data
    return run_training(args, config, train_segmenter, {
        "--train-images": data.train_images, "--train-labels": data.train_labels, "--val-images": data.val_images,
        "--val-labels": data.val_labels, "--classes": data.classes})


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, metavar="RUN|FILE",
                        help="`seg train` run directory (best.pt, else last.pt) or checkpoint file")
    parser.add_argument("--images", required=True, metavar="DIR|FILE", help="image folder or one image")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the label PNGs (<stem>.png)")
    parser.add_argument("--mode", choices=("whole", "slide"), default="whole",
                        help="whole image (default) or sliding window")
    parser.add_argument("--crop", type=positive_int, nargs=2, metavar=("H", "W"), help="window size (slide)")
    parser.add_argument("--stride", type=positive_int, nargs=2, metavar=("H", "W"),
                        help="window stride (slide; default 2/3 of --crop)")
    parser.add_argument("--tta-scales", type=positive_float, nargs="+", default=[1.0], metavar="R",
                        help="test-time augmentation: run at each ratio R of the image size and average the class "
                             "probabilities, e.g. 0.5 0.75 1.0 1.25 1.5 1.75 (default: 1.0 only)")
    parser.add_argument("--flip", action="store_true",
                        help="test-time augmentation: also run each scale mirrored (left-right)")
    parser.add_argument("--viz", metavar="DIR",
                        help="also write overlays: each image blended with its label colours, with a legend")
    add_device_argument(parser)
    add_trust_argument(parser)
    add_progress_argument(parser)


def run_predict(args: argparse.Namespace) -> int:
    from densevision.engine.device import resolve_device
    from densevision.errors import DenseVisionError
    from densevision.io import check_outputs
    from densevision.segmentation.model import load_segmenter
    from densevision.segmentation.predict import predict_folder, slide_stride

    check_outputs({"--out": args.out, "--viz": args.viz}, {"--images": args.images, "--checkpoint": args.checkpoint},
                  folders=("--out", "--viz"))
    if args.viz is not None and Path(args.viz).resolve() == Path(args.out).resolve():
        raise DenseVisionError(f"--viz {args.viz} is the --out folder: the overlays would replace the label PNGs; "
                               "choose another folder")
    stride = args.stride
    if args.mode == "slide":
        if args.crop is None:
            raise DenseVisionError("--mode slide needs --crop H W")
        stride = slide_stride(args.crop, stride)
    model = load_segmenter(args.checkpoint, trust_checkpoint=args.trust_checkpoint).to(resolve_device(args.device))
    written = predict_folder(model, args.images, args.out, mode=args.mode, crop=args.crop, stride=stride,
                             scales=args.tta_scales, flip=args.flip, viz_dir=args.viz, progress=not args.no_progress)
    print(f"{args.out}: {len(written)} label map(s)" + (f"; overlays in {args.viz}" if args.viz else ""))
    return 0


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--pred", required=True, metavar="DIR", help="predicted label PNGs (<stem>.png)")
    parser.add_argument("--labels", required=True, metavar="DIR", help="ground-truth label PNGs (<stem>.png)")
    parser.add_argument("--classes", required=True, metavar="FILE", help="classes.json")
    parser.add_argument("--ignore-index", type=int, default=255, help="label value left out (default 255)")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="ground truth 0 = 'other' (ignored), v -> v-1 (ADE20K); predictions are not changed")
    parser.add_argument("--boundary-ratio", type=float, default=0.02, metavar="R",
                        help="Boundary IoU per class with bands of R x the image diagonal (default 0.02; 0: off)")
    parser.add_argument("--out", metavar="metrics.json", help="write the metrics as JSON")


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from densevision.data.labelmaps import invalid_values, read_classes, read_label_map
    from densevision.errors import DataError
    from densevision.evaluation.semantic import SemanticEvaluator, format_table
    from densevision.io import check_outputs, write_json

    check_outputs({"--out": args.out}, {"--pred": args.pred, "--labels": args.labels, "--classes": args.classes})
    classes = read_classes(args.classes)
    pred_dir, label_dir = Path(args.pred), Path(args.labels)
    for folder, flag in ((pred_dir, "--pred"), (label_dir, "--labels")):
        if not folder.is_dir():
            raise DataError(f"{flag} {folder}: folder not found")
    labels = sorted(label_dir.glob("*.png"))
    if not labels:
        raise DataError(f"--labels {label_dir}: no label PNGs")
    missing = [p.name for p in labels if not (pred_dir / p.name).is_file()]
    if missing:
        raise DataError(f"--pred {pred_dir}: no prediction for {len(missing)} label file(s), e.g. {missing[0]}")
    if args.boundary_ratio < 0:
        raise DataError(f"--boundary-ratio {args.boundary_ratio}: expected a non-negative ratio")
    evaluator = SemanticEvaluator(classes, ignore_index=args.ignore_index,
                                  boundary_ratio=args.boundary_ratio or None)
    for path in labels:
        label = read_label_map(path, reduce_zero=args.reduce_zero_label)
        pred = read_label_map(pred_dir / path.name)
        if pred.shape != label.shape:
            raise DataError(f"{pred_dir / path.name}: prediction is {pred.shape[1]}x{pred.shape[0]}, "
                            f"label {path} is {label.shape[1]}x{label.shape[0]}")
        bad = invalid_values(label, len(classes), args.ignore_index)
        if bad:
            listed = ", ".join(f"{v} ({c} px)" for v, c in sorted(bad.items()))
            raise DataError(f"{path}: values {listed} are neither one of the {len(classes)} classes nor ignore "
                            f"{args.ignore_index} (see `densevision data check`)")
        evaluator.update(torch.from_numpy(pred), torch.from_numpy(label))
    results = evaluator.results()
    print(format_table(results))
    if args.out:
        write_json(args.out, results)
    return 0
