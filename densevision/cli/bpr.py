"""``densevision bpr patches|train|refine``: boundary patch refinement of instance masks."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from densevision.cli._training import add_training_arguments, run_training
from densevision.cli._types import (
    add_device_argument,
    add_progress_argument,
    add_trust_argument,
    positive_int,
    probability,
)
from densevision.engine.config import add_config_flags, config_from_args
from densevision.errors import DenseVisionError
from densevision.refine.config import RefineRuleConfig, RefineTrainConfig


def _model_arg(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.isidentifier():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (e.g. width=8), got {text!r}")
    return key, yaml.safe_load(value)


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "bpr", help="boundary patch refinement of instance masks",
        description="Boundary Patch Refinement (BPR): cut training patches around detector masks, train the "
                    "refinement network, refine a COCO results file.",
    )
    sub = parser.add_subparsers(dest="bpr_command", metavar="ACTION", required=True)

    patches = sub.add_parser(
        "patches", help="build a training patch folder from detector masks",
        description="Cut image / coarse-mask / ground-truth patches around the boundaries of the detections "
                    "that match a ground truth (mask IoU > --match-iou) and store them as shards in --out.",
    )
    source = patches.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="DET_RUN", help="Mask R-CNN run directory or checkpoint")
    source.add_argument("--results", metavar="RES.json", help="COCO results of a detector on these images")
    patches.add_argument("--data", metavar="DIR", help="data folder laid out like `densevision data synth`")
    patches.add_argument("--split", choices=("train", "val"), default="train", help="split of --data (train)")
    patches.add_argument("--ann", help="COCO instances json (instead of --data)")
    patches.add_argument("--images", help="image folder of --ann")
    patches.add_argument("--out", required=True, metavar="PATCH_DIR", help="patch folder to create")
    patches.add_argument("--patch-size", type=positive_int, default=None, help="patch side (default 64)")
    patches.add_argument("--nms-iou", type=probability, default=None, help="proposal NMS IoU (default 0.25)")
    patches.add_argument("--match-iou", type=probability, default=None,
                         help="keep detections with a same-category ground truth above this mask IoU (default 0.5)")
    patches.add_argument("--shard-size", type=positive_int, default=4096,
                         help="patches per shard file (default 4096)")
    add_device_argument(patches, "device of the detector: ")
    patches.add_argument("--batch-size", "--batch", type=positive_int, default=2,
                         help="detector images per batch (default 2)")
    add_trust_argument(patches)
    add_progress_argument(patches)
    patches.set_defaults(func=_patches, command_name="bpr patches")

    train = sub.add_parser(
        "train", help="train the refinement network on a patch folder",
        description="Train the BPR network (HRNetV2 + coarse-mask input) with SGD and poly decay; validation "
                    "is patch-level mIoU. Writes checkpoints, metrics.json, TensorBoard events, config.yaml.",
    )
    add_training_arguments(train, RefineTrainConfig, skip=("model.overrides",))
    train.add_argument("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
                       help="backbone override, repeatable (e.g. --model-arg width=8); adds to model.overrides")
    train.set_defaults(func=_train, command_name="bpr train")

    refine = sub.add_parser(
        "refine", help="refine the masks of a COCO results file",
        description="Refine the instance masks of a COCO results file (polygon or RLE) with a trained BPR "
                    "network. Every detection is written out; the detector's boxes, scores and categories are kept "
                    "(--boxes from-mask recomputes boxes). Detections scoring below --score-thr, beyond the --top-k "
                    "highest-scoring of their image, or whose coarse mask covers fewer than --min-area pixels keep "
                    "their coarse mask (and cost no time), and pixels where the refiner is unsure (within --margin "
                    "of 0.5) keep their coarse value; the area and margin defaults were chosen on a tuning split "
                    "(benchmarks/bpr_refine_rule.py). No ground truth is needed: the "
                    "images come from --ann, else from RES.images.json beside --results (what `densevision "
                    "detect predict` writes without --ann). With --upper-bound nothing is refined: the pixels "
                    "within 1 / 2 / 3 px of each matched detection's boundary take the ground truth of --ann, "
                    "and the segm / Boundary AP that gives is reported next to the coarse AP (BPR's upper bound).",
    )
    refine.add_argument("--ann", help="COCO json whose 'images' list gives ids, file names and sizes "
                        "(default: RES.images.json beside --results); with --upper-bound, the ground truth")
    refine.add_argument("--images", help="image folder the file names are relative to (not read by --upper-bound)")
    refine.add_argument("--results", required=True, metavar="RES.json", help="coarse COCO results json")
    refine.add_argument("--checkpoint", metavar="BPR_RUN|FILE",
                        help="`bpr train` run directory (best.pt, else last.pt) or checkpoint file")
    refine.add_argument("--out", required=True,
                        help="refined results json to write (with --upper-bound: the metrics json)")
    refine.add_argument("--upper-bound", action="store_true",
                        help="report the AP of replacing each matched detection's pixels within 1 / 2 / 3 px of "
                             "its boundary by the ground truth of --ann, instead of refining")
    refine.add_argument("--nms-iou", type=probability, default=None,
                        help="proposal NMS IoU (default 0.25; BPR uses 0.55 on Cityscapes)")
    refine.add_argument("--batch-size", "--batch", type=positive_int, default=64,
                        help="patches per network batch (default 64)")
    add_device_argument(refine)
    add_trust_argument(refine)
    add_progress_argument(refine)
    add_config_flags(refine, RefineRuleConfig)
    refine.set_defaults(func=_refine, command_name="bpr refine")


def _data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.data is not None:
        if args.ann is not None or args.images is not None:
            raise DenseVisionError("give either --data or --ann/--images, not both")
        root = Path(args.data)
        return root / "annotations" / f"instances_{args.split}.json", root / args.split
    if args.ann is None or args.images is None:
        raise DenseVisionError("give --data DIR, or both --ann and --images")
    return Path(args.ann), Path(args.images)


def _given(**options: Any) -> dict[str, Any]:
    """The options the user gave (None: the library's default)."""
    return {k: v for k, v in options.items() if v is not None}


def _detector_results(args: argparse.Namespace, ann: Path, images: Path) -> list[dict]:
    from densevision.detection.predict import (
        ImageDataset,
        check_categories,
        load_detector,
        records_from_coco,
        run_detector,
    )

    model, info = load_detector(args.checkpoint, device=args.device, trust_checkpoint=args.trust_checkpoint)
    records, categories = records_from_coco(ann, images)
    check_categories(info, categories, str(ann))
    return run_detector(model, ImageDataset(records), info.label_to_cat, batch_size=args.batch_size,
                        progress=not args.no_progress)


def _patches(args: argparse.Namespace) -> int:
    from densevision.data.coco import load_coco
    from densevision.io import check_outputs
    from densevision.refine.dataset import build_patch_dataset

    ann, images = _data_paths(args)
    check_outputs({"--out": args.out}, {"--ann": ann, "--images": images, "--results": args.results,
                                        "--checkpoint": args.checkpoint}, folders=("--out",))
    dataset = load_coco(ann)
    results: Any = _detector_results(args, ann, images) if args.checkpoint is not None else args.results
    index = build_patch_dataset(dataset, images, results, args.out, shard_size=args.shard_size,
                                progress=not args.no_progress,
                                **_given(patch_size=args.patch_size, nms_iou=args.nms_iou, match_iou=args.match_iou))
    print(f"{args.out}: {index['patches']} patches of {index['instances']} matched instances "
          f"({index['detections']} detections, {index['images']} images) in {len(index['shards'])} shard(s)")
    return 0


def _train(args: argparse.Namespace) -> int:
    from densevision.refine.train import train_refiner

    config = config_from_args(args, RefineTrainConfig)
    if args.model_arg:
        config.model.overrides = {**config.model.overrides, **dict(args.model_arg)}
    return run_training(args, config, train_refiner, {
        "--patches": config.data.patches, "--val-patches": config.data.val_patches,
        "--backbone-weights": config.model.backbone_weights})


def _image_list(args: argparse.Namespace) -> tuple[list[dict], str]:
    """The image entries ``bpr refine`` reads (from --ann, else the results' companion list) and their file."""
    from densevision.data.jsonio import read_json
    from densevision.data.results import images_json_path
    from densevision.refine.pipeline import check_images

    source = args.ann
    if source is None:
        source = images_json_path(args.results)
        if not source.is_file():
            raise DenseVisionError(
                f"--results {args.results}: no image list {source} beside it; give --ann COCO.json listing the "
                "images, or predict without --ann (`densevision detect predict` writes that list)")
    data = read_json(source)
    images = data.get("images") if isinstance(data, dict) else None
    check_images(images, str(source))
    return images, str(source)


def _refine_summary(counts: Counter[str], rule: RefineRuleConfig) -> str:
    """``N instances, R refined, S kept coarse (why)`` of a ``refine_results`` count."""
    why = {"score": f"scoring below {rule.score_thr:g}", "top_k": f"beyond the top {rule.top_k} of their image",
           "area": f"under {rule.min_area} px"}
    kept = [f"{counts[reason]} {text}" for reason, text in why.items() if counts[reason]]
    text = f"{counts.total()} instances, {counts['refined']} refined"
    return f"{text}, {counts.total() - counts['refined']} kept coarse ({', '.join(kept)})" if kept else text


def _refine(args: argparse.Namespace) -> int:
    if args.upper_bound:
        return _upper_bound(args)
    from densevision.engine.device import resolve_device
    from densevision.io import check_outputs, write_json
    from densevision.refine.network import load_refine_net
    from densevision.refine.pipeline import refine_results
    from densevision.refine.selection import check_rule

    if args.checkpoint is None or args.images is None:
        raise DenseVisionError("--checkpoint and --images are required (unless --upper-bound)")
    rule = config_from_args(args, RefineRuleConfig)
    check_rule(rule)
    check_outputs({"--out": args.out}, {"--ann": args.ann, "--images": args.images, "--results": args.results,
                                        "--checkpoint": args.checkpoint})
    images, source = _image_list(args)
    device = resolve_device(args.device)
    model = load_refine_net(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    counts: Counter[str] = Counter()
    refined = refine_results(images, args.images, args.results, model, batch_size=args.batch_size, device=device,
                             rule=rule, progress=not args.no_progress, counts=counts, source=source,
                             **_given(nms_iou=args.nms_iou))
    write_json(args.out, refined, indent=None)
    print(f"{args.out}: {_refine_summary(counts, rule)}")
    return 0


def _upper_bound(args: argparse.Namespace) -> int:
    from densevision.data.coco import load_coco
    from densevision.data.jsonio import read_json
    from densevision.evaluation import CocoEvaluator
    from densevision.io import check_outputs, write_json
    from densevision.refine.upper_bound import DEFAULT_MATCH_IOU, UPPER_BOUND_WIDTHS, upper_bound_results
    from densevision.report import gain_table

    if args.ann is None:
        raise DenseVisionError("--upper-bound needs the ground truth: give --ann GT.json with its annotations")
    check_outputs({"--out": args.out}, {"--ann": args.ann, "--images": args.images, "--results": args.results,
                                        "--checkpoint": args.checkpoint})
    ground_truth = load_coco(args.ann)
    evaluator = CocoEvaluator(ground_truth, ("segm", "boundary"))
    restored = upper_bound_results(ground_truth, args.results, UPPER_BOUND_WIDTHS, source=args.ann)
    rows = {"coarse": evaluator.evaluate(read_json(args.results)),
            **{f"{w} px": evaluator.evaluate(restored[w]) for w in UPPER_BOUND_WIDTHS}}
    write_json(args.out, {"widths": list(UPPER_BOUND_WIDTHS), "match_iou": DEFAULT_MATCH_IOU, "metrics": rows})
    print(gain_table(rows, ("segm", "boundary"), ("AP", "AP50", "AP75")))
    print(f"{args.out}: upper bound of boundary refinement (matched detections' pixels within 1 / 2 / 3 px of "
          "their boundary replaced by the ground truth)")
    return 0
