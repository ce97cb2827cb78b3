"""``densevision seg train|predict|eval``: semantic segmentation (UperNet, Semantic FPN, HRNetV2 heads).

No heavy import at module level: the flags come from the torch-free config module.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from densevision.cli._spec import Group, Verb
from densevision.cli._training import add_training_arguments, run_training
from densevision.cli._types import (
    add_device_argument,
    add_progress_argument,
    add_trust_argument,
    positive_float,
    positive_int,
)

if TYPE_CHECKING:
    from densevision.data.labelmaps import Label

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
        "--data": data.data, "--train-images": data.train_images, "--train-labels": data.train_labels,
        "--train-json": data.train_json, "--val-images": data.val_images, "--val-labels": data.val_labels,
        "--val-json": data.val_json, "--classes": data.classes})


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
    parser.description = ("Score predicted label PNGs (<image stem>.png, as `seg predict` writes them) against the "
                          "ground truth: --labels DIR --classes FILE (generic layout), the validation split of "
                          "--format ade20k|cityscapes --data ROOT, or --format coco --val-json FILE.")
    parser.add_argument("--pred", required=True, metavar="DIR", help="predicted label PNGs (<image stem>.png)")
    parser.add_argument("--format", choices=("generic", "ade20k", "cityscapes", "coco"), default="generic",
                        help="ground-truth layout (default generic)")
    parser.add_argument("--labels", metavar="DIR", help="ground-truth label PNGs (<stem>.png; generic)")
    parser.add_argument("--classes", metavar="FILE", help="classes.json (generic)")
    parser.add_argument("--data", metavar="ROOT", help="ADE20K / Cityscapes root: its validation split is scored")
    parser.add_argument("--val-json", metavar="FILE", help="COCO instances json, drawn as label maps (coco)")
    parser.add_argument("--ignore-index", type=int, default=255, help="label value left out (default 255)")
    parser.add_argument("--reduce-zero-label", action="store_true",
                        help="ground truth 0 = 'other' (ignored), v -> v-1 (generic; always on with ade20k); "
                             "predictions are not changed")
    parser.add_argument("--boundary-ratio", type=float, default=0.02, metavar="R",
                        help="Boundary IoU per class with bands of R x the image diagonal (default 0.02; 0: off)")
    parser.add_argument("--out", metavar="metrics.json", help="write the metrics as JSON")


_EVAL_SOURCES = {"generic": ("labels", "classes", "reduce_zero_label"), "ade20k": ("data", "reduce_zero_label"),
                 "cityscapes": ("data",), "coco": ("val_json",)}


def _ground_truth(args: argparse.Namespace) -> tuple[list[str], list[tuple[str, Label]], bool]:
    """Class names, ``[(prediction file name, ground-truth label)]`` and whether the labels reduce zero."""
    from densevision.data.labelmaps import read_classes
    from densevision.data.seg_formats import coco_label_pairs, label_map_data
    from densevision.errors import DataError, DenseVisionError

    stray = [k for k in ("labels", "classes", "data", "val_json", "reduce_zero_label")
             if getattr(args, k) and k not in _EVAL_SOURCES[args.format]]
    if stray:
        raise DenseVisionError(f"--{stray[0].replace('_', '-')} does not go with --format {args.format}")
    if args.format == "generic":
        if args.labels is None or args.classes is None:
            raise DenseVisionError("seg eval needs --labels DIR --classes FILE (or --format ade20k|cityscapes "
                                   "--data ROOT, or --format coco --val-json FILE)")
        label_dir = Path(args.labels)
        if not label_dir.is_dir():
            raise DataError(f"--labels {label_dir}: folder not found")
        labels = sorted(label_dir.glob("*.png"))
        if not labels:
            raise DataError(f"--labels {label_dir}: no label PNGs")
        return read_classes(args.classes), [(path.name, path) for path in labels], args.reduce_zero_label
    if args.format == "coco":
        if args.val_json is None:
            raise DenseVisionError("--format coco is scored against --val-json FILE")
        classes, split = coco_label_pairs(args.val_json)
        reduce_zero = False
    else:
        layout = label_map_data(args.format, data=args.data)
        if layout.val is None:
            raise DataError(f"--data {args.data}: no validation split")
        classes, split, reduce_zero = layout.classes, layout.val, layout.reduce_zero
    return classes, [(f"{image.stem}.png", label) for image, label in split.checked()], reduce_zero


def run_eval(args: argparse.Namespace) -> int:
    import torch

    from densevision.data.labelmaps import invalid_values, load_label, read_label_map
    from densevision.errors import DataError
    from densevision.evaluation.semantic import SemanticEvaluator, format_table
    from densevision.io import check_outputs, write_json

    check_outputs({"--out": args.out}, {"--pred": args.pred, "--labels": args.labels, "--classes": args.classes,
                                        "--data": args.data, "--val-json": args.val_json})
    pred_dir = Path(args.pred)
    if not pred_dir.is_dir():
        raise DataError(f"--pred {pred_dir}: folder not found")
    if args.boundary_ratio < 0:
        raise DataError(f"--boundary-ratio {args.boundary_ratio}: expected a non-negative ratio")
    classes, truth, reduce_zero = _ground_truth(args)
    missing = [name for name, _ in truth if not (pred_dir / name).is_file()]
    if missing:
        raise DataError(f"--pred {pred_dir}: {len(missing)} of {len(truth)} predictions missing, e.g. {missing[0]}")
    evaluator = SemanticEvaluator(classes, ignore_index=args.ignore_index,
                                  boundary_ratio=args.boundary_ratio or None)
    for name, source in truth:
        label = load_label(source, reduce_zero=reduce_zero)
        pred = read_label_map(pred_dir / name)
        if pred.shape != label.shape:
            raise DataError(f"{pred_dir / name}: prediction is {pred.shape[1]}x{pred.shape[0]}, "
                            f"label {source} is {label.shape[1]}x{label.shape[0]}")
        bad = invalid_values(label, len(classes), args.ignore_index)
        if bad:
            listed = ", ".join(f"{v} ({c} px)" for v, c in sorted(bad.items()))
            raise DataError(f"{source}: values {listed} are neither one of the {len(classes)} classes nor ignore "
                            f"{args.ignore_index} (see `densevision data check`)")
        evaluator.update(torch.from_numpy(pred), torch.from_numpy(label))
    results = evaluator.results()
    print(format_table(results))
    if args.out:
        write_json(args.out, results)
    return 0
