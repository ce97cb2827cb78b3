"""``densevision detect train`` (also ``densevision train``): train Mask R-CNN on COCO-format data (works under
``torchrun -m densevision detect train``)."""

from __future__ import annotations

import argparse
import json

from densevision.cli._types import add_device_argument, add_progress_argument, nonnegative_int, positive_int
from densevision.errors import DenseVisionError


def _json_object(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("expected a JSON object such as '{\"width\": 8}'")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of ``train``."""
    from densevision.engine import add_config_argument

    p.description = (
        "Train Mask R-CNN on COCO-format data with periodic COCO evaluation (bbox, segm, boundary AP). The run "
        "directory gets config.yaml, checkpoints (last.pt, best.pt), metrics.json, loss_curve.png and eval/; "
        "`densevision detect predict --checkpoint RUN_DIR` needs nothing else."
    )
    data = p.add_argument_group("data")
    data.add_argument("--data", help="folder laid out like `densevision data synth` output "
                      "(annotations/instances_{train,val}.json, train/, val/)")
    data.add_argument("--train-json", help="COCO training annotations (instead of --data)")
    data.add_argument("--train-images", help="training image folder")
    data.add_argument("--val-json", help="COCO validation annotations (optional)")
    data.add_argument("--val-images", help="validation image folder")
    model = p.add_argument_group("model")
    model.add_argument("--backbone", default="hrnet_w18_small",
                       help="zoo model name or timm:<name> (default hrnet_w18_small)")
    model.add_argument("--backbone-weights", help="backbone checkpoint (classification or dense)")
    model.add_argument("--backbone-kwargs", type=_json_object, default=None,
                       help="JSON object of backbone overrides, e.g. '{\"drop_path_rate\": 0.1}'")
    model.add_argument("--heads", choices=("light", "torchvision"), default="light",
                       help="head sizes: light (CPU-friendly, default) or torchvision's")
    model.add_argument("--model-kwargs", type=_json_object, default=None,
                       help="JSON object of further build_mask_rcnn arguments, e.g. '{\"fpn_channels\": 256}'")
    model.add_argument("--freeze-at", type=int, default=0, help="freeze the stem (1) and the first N-1 stages")
    model.add_argument("--min-size", type=int, nargs="+", default=None,
                       help="short image side (several: random per batch while training); default: data median")
    model.add_argument("--max-size", type=int, default=None, help="long image side cap")
    opt = p.add_argument_group("optimisation")
    opt.add_argument("--out", required=True, help="run directory")
    opt.add_argument("--iters", type=positive_int, default=1000, help="iterations (default 1000)")
    opt.add_argument("--batch-size", "--batch", dest="batch_size", type=positive_int, default=4,
                     help="images per iteration and process (default 4)")
    opt.add_argument("--lr", type=float, default=0.02, help="SGD learning rate (default 0.02)")
    opt.add_argument("--weight-decay", type=float, default=1e-4)
    opt.add_argument("--warmup-iters", type=int, default=100)
    opt.add_argument("--schedule", choices=("cosine", "step", "poly", "constant"), default="cosine")
    opt.add_argument("--grad-clip", type=float, default=None, help="clip the gradient norm to this value")
    opt.add_argument("--amp", nargs="?", const="auto", default="off", choices=("off", "auto", "bf16", "fp16"),
                     help="mixed precision; bare --amp: fp16 on CUDA, bf16 on the CPU")
    add_device_argument(opt)
    opt.add_argument("--seed", type=int, default=0)
    opt.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt")
    opt.add_argument("--eval-every", type=int, default=0, help="evaluate every N iterations (0: at the end)")
    opt.add_argument("--eval-batch-size", type=int, default=2)
    opt.add_argument("--checkpoint-every", type=int, default=500)
    opt.add_argument("--workers", "--num-workers", dest="num_workers", type=nonnegative_int, default=0,
                     help="data loading processes (default 0)")
    add_progress_argument(opt)
    add_config_argument(p)


def _data_args(args: argparse.Namespace) -> dict:
    from densevision.detection.train import data_layout

    if args.data and args.train_json:
        raise DenseVisionError("give either --data or --train-json/--train-images, not both")
    if args.data:
        return data_layout(args.data)
    if not (args.train_json and args.train_images):
        raise DenseVisionError("training data needed: --data DIR, or --train-json and --train-images")
    if bool(args.val_json) != bool(args.val_images):
        raise DenseVisionError("--val-json and --val-images go together")
    return {"train_json": args.train_json, "train_images": args.train_images, "val_json": args.val_json,
            "val_images": args.val_images}


def run(args: argparse.Namespace) -> int:
    """Train, then print where the run is and its last evaluation."""
    from densevision.detection.train import train_detector
    from densevision.engine import destroy_distributed, is_main_process

    model_kwargs = dict(args.model_kwargs or {})
    model_kwargs.update(heads=args.heads, freeze_at=args.freeze_at, backbone_kwargs=args.backbone_kwargs,
                        backbone_weights=args.backbone_weights)
    min_size = args.min_size[0] if args.min_size and len(args.min_size) == 1 else args.min_size
    try:
        summary = train_detector(
            **_data_args(args), out_dir=args.out, backbone=args.backbone, iters=args.iters,
            batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
            warmup_iters=args.warmup_iters, schedule=args.schedule, grad_clip=args.grad_clip, device=args.device,
            amp=args.amp, eval_every=args.eval_every, eval_batch_size=args.eval_batch_size,
            checkpoint_every=args.checkpoint_every, seed=args.seed, resume=args.resume, min_size=min_size,
            max_size=args.max_size, model_kwargs=model_kwargs, num_workers=args.num_workers,
            progress=not args.no_progress,
        )
    finally:
        destroy_distributed()
    if is_main_process():
        print(f"trained {summary['iteration']} iterations; checkpoint: {summary['checkpoint']}")
        for key in ("bbox/AP", "segm/AP", "boundary/AP"):
            if key in summary["metrics"]:
                print(f"{key}: {summary['metrics'][key]:.2f}")
    return 0
