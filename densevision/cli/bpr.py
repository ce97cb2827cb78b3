"""``densevision bpr patches|train|refine``: boundary patch refinement of instance masks."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import yaml

from densevision.data.coco import load_coco, read_json
from densevision.engine import add_config_argument
from densevision.engine.trainer import AMP_MODES
from densevision.errors import DenseVisionError
from densevision.io import write_json
from densevision.refine.dataset import DEFAULT_MATCH_IOU, build_patch_dataset
from densevision.refine.network import DEFAULT_BACKBONE, DEFAULT_INPUT_SIZE, load_refine_net
from densevision.refine.patches import DEFAULT_NMS_IOU, DEFAULT_PATCH_SIZE
from densevision.refine.pipeline import check_images, refine_results
from densevision.refine.train import train_refiner


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


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
    patches.add_argument("--patch-size", type=int, default=DEFAULT_PATCH_SIZE, help="patch side (default 64)")
    patches.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU, help="proposal NMS IoU (0.25)")
    patches.add_argument("--match-iou", type=float, default=DEFAULT_MATCH_IOU,
                         help="keep detections with a same-category ground truth above this mask IoU (0.5)")
    patches.add_argument("--shard-size", type=int, default=4096, help="patches per shard file (default 4096)")
    patches.add_argument("--device", default=None, help="device of the detector (default: cuda if available)")
    patches.add_argument("--batch", type=int, default=2, help="detector images per batch (default 2)")
    patches.set_defaults(func=_patches)

    train = sub.add_parser(
        "train", help="train the refinement network on a patch folder",
        description="Train the BPR network (HRNetV2 + coarse-mask input) with SGD and poly decay; validation "
                    "is patch-level mIoU. Writes checkpoints, metrics.json, TensorBoard events, config.yaml.",
    )
    train.add_argument("--patches", required=True, metavar="PATCH_DIR", help="patch folder of `bpr patches`")
    train.add_argument("--out", required=True, metavar="BPR_RUN", help="run directory")
    train.add_argument("--val-patches", metavar="DIR",
                       help="validation patch folder (default: hold out 1 instance in 20 of --patches)")
    train.add_argument("--backbone", default=DEFAULT_BACKBONE, help=f"zoo HRNet (default {DEFAULT_BACKBONE})")
    train.add_argument("--backbone-weights", metavar="PATH", help="ImageNet HRNet checkpoint of the backbone")
    train.add_argument("--model-arg", type=_model_arg, action="append", default=[], metavar="KEY=VALUE",
                       help="backbone override, repeatable (e.g. --model-arg width=8)")
    train.add_argument("--input-size", type=int, default=DEFAULT_INPUT_SIZE, help="network input side (128)")
    train.add_argument("--iters", type=int, default=160_000, help="iterations (default 160000)")
    train.add_argument("--batch", type=int, default=32, help="patches per iteration (default 32)")
    train.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01)")
    train.add_argument("--momentum", type=float, default=0.9)
    train.add_argument("--weight-decay", type=float, default=5e-4)
    train.add_argument("--power", type=float, default=0.9, help="poly decay power (default 0.9)")
    train.add_argument("--eval-every", type=int, default=4000, help="validation period (default 4000)")
    train.add_argument("--checkpoint-every", type=int, default=4000, help="checkpoint period (default 4000)")
    train.add_argument("--workers", type=int, default=2, help="data loader processes (default 2)")
    train.add_argument("--device", default=None, help="default: cuda if available")
    train.add_argument("--amp", choices=AMP_MODES, default="off", help="mixed precision (default off)")
    train.add_argument("--seed", type=int, default=0)
    train.add_argument("--resume", action="store_true", help="continue the run in --out")
    train.add_argument("--no-tensorboard", action="store_true", help="do not write TensorBoard events")
    add_config_argument(train)
    train.set_defaults(func=_train)

    refine = sub.add_parser(
        "refine", help="refine the masks of a COCO results file",
        description="Refine every instance mask of a COCO results file (polygon or RLE) with a trained BPR "
                    "network; scores and categories are kept, boxes recomputed from the refined masks.",
    )
    refine.add_argument("--ann", required=True, help="COCO json with an 'images' list (annotations unused)")
    refine.add_argument("--images", required=True, help="image folder the file names are relative to")
    refine.add_argument("--results", required=True, help="coarse COCO results json")
    refine.add_argument("--checkpoint", required=True, metavar="BPR_RUN|FILE",
                        help="`bpr train` run directory (best.pt, else last.pt) or checkpoint file")
    refine.add_argument("--out", required=True, help="refined results json to write")
    refine.add_argument("--nms-iou", type=float, default=DEFAULT_NMS_IOU,
                        help="proposal NMS IoU (default 0.25; BPR uses 0.55 on Cityscapes)")
    refine.add_argument("--batch", type=int, default=64, help="patches per network batch (default 64)")
    refine.add_argument("--device", default=None, help="default: cuda if available")
    refine.add_argument("--trust-checkpoint", action="store_true",
                        help="allow a checkpoint that needs full unpickling (only from a trusted source)")
    refine.set_defaults(func=_refine)


def _data_paths(args: argparse.Namespace) -> tuple[Path, Path]:
    if args.data is not None:
        if args.ann is not None or args.images is not None:
            raise DenseVisionError("give either --data or --ann/--images, not both")
        root = Path(args.data)
        return root / "annotations" / f"instances_{args.split}.json", root / args.split
    if args.ann is None or args.images is None:
        raise DenseVisionError("give --data DIR, or both --ann and --images")
    return Path(args.ann), Path(args.images)


def _detector_results(checkpoint: str, ann: Path, images: Path, device: str, batch: int) -> list[dict]:
    from densevision.detection.predict import (
        ImageDataset,
        check_categories,
        load_detector,
        records_from_coco,
        run_detector,
    )

    model, info = load_detector(checkpoint, device=device)
    records, categories = records_from_coco(ann, images)
    check_categories(info, categories, str(ann))
    return run_detector(model, ImageDataset(records), info.label_to_cat, batch_size=batch, progress=True)


def _patches(args: argparse.Namespace) -> int:
    ann, images = _data_paths(args)
    dataset = load_coco(ann)
    if args.checkpoint is not None:
        device = args.device or _default_device()
        results: Any = _detector_results(args.checkpoint, ann, images, device, args.batch)
    else:
        results = args.results
    index = build_patch_dataset(dataset, images, results, args.out, patch_size=args.patch_size,
                                nms_iou=args.nms_iou, match_iou=args.match_iou, shard_size=args.shard_size)
    print(f"{args.out}: {index['patches']} patches of {index['instances']} matched instances "
          f"({index['detections']} detections, {index['images']} images) in {len(index['shards'])} shard(s)")
    return 0


def _train(args: argparse.Namespace) -> int:
    summary = train_refiner(
        args.patches, args.out, val_patch_dir=args.val_patches, backbone=args.backbone,
        backbone_weights=args.backbone_weights, model_args=dict(args.model_arg), input_size=args.input_size,
        iters=args.iters, batch_size=args.batch, lr=args.lr, momentum=args.momentum,
        weight_decay=args.weight_decay, power=args.power, eval_every=args.eval_every,
        checkpoint_every=args.checkpoint_every, num_workers=args.workers, device=args.device, amp=args.amp,
        seed=args.seed, resume=args.resume, tensorboard=not args.no_tensorboard, config=vars(args),
    )
    metrics = ", ".join(f"{k} {v:.2f}" for k, v in summary["metrics"].items())
    print(f"{args.out}: {summary['iteration']} iterations; {metrics or 'no validation patches'}")
    return 0


def _refine(args: argparse.Namespace) -> int:
    data = read_json(args.ann)
    images = data.get("images") if isinstance(data, dict) else None
    check_images(images, args.ann)
    model = load_refine_net(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    refined = refine_results(images, args.images, args.results, model, nms_iou=args.nms_iou,
                             batch_size=args.batch, device=args.device or _default_device())
    write_json(args.out, refined, indent=None)
    print(f"{args.out}: {len(refined)} refined instances")
    return 0
