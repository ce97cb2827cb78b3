"""Keypoint R-CNN against top-down pose on the same synthetic split: keypoint OKS AP and wall times.

Both networks train for ``--iters`` iterations (each with its own recipe: SGD on whole images for the detector,
Adam on box crops for pose) on the same training split over the same backbone: Keypoint R-CNN
(``detect train --detector keypoint_rcnn``) finds boxes and keypoints in one pass; the top-down network (``pose
train --backbone B``, SimpleBaseline head) estimates keypoints in given boxes, here the ground-truth boxes and
Keypoint R-CNN's own boxes (detection -> pose). Keypoint OKS AP (pycocotools, the categories' ``kpt_sigmas``) and
box AP are measured on the validation split. Every command run is printed, so a row can be reproduced alone.
``--backbone-from CKPT`` starts both backbones from a densevision detector's ``backbone.body.*`` tensors;
``--topdown CKPT`` takes a trained pose network (e.g. the shipped demo one) instead of training one,
``--keypoint-rcnn RUN`` a trained Keypoint R-CNN.

    python benchmarks/keypoint_rcnn_vs_topdown.py --iters 2000 --train 200 --val 50
    python benchmarks/keypoint_rcnn_vs_topdown.py --data DIR --iters 2000 --out runs/kprcnn_vs_topdown
    densevision data synth --out data/demo --train 1000 --val 40  # the demo's splits
    python benchmarks/keypoint_rcnn_vs_topdown.py --data data/demo --topdown densevision/assets/demo_pose.pt \
        --backbone hrnet_w18_small_v2 --backbone-from densevision/assets/demo_detector.pt --input 256 --iters 4000 \
        --batch-size 2 --det-args '--lr 0.01 --warmup-iters 250 --grad-clip 10 --anchor-scale 4' --device cpu
"""

from __future__ import annotations

import argparse
import json
import shlex
import tempfile
import time
from pathlib import Path

from cascade_vs_mask_rcnn import extract_backbone

from densevision.cli import main as densevision
from densevision.data.synthetic import generate
from densevision.evaluation import evaluate

GT_BOXES = "ground truth"


def run(argv: list[str]) -> float:
    """Run one ``densevision`` command; its wall time in seconds (a failing command stops the benchmark)."""
    print("$ densevision " + shlex.join(argv), flush=True)
    start = time.perf_counter()
    code = densevision(argv)
    if code != 0:
        raise SystemExit(f"densevision {argv[0]} {argv[1]} failed with exit status {code}")
    return time.perf_counter() - start


def row(method: str, boxes: str, val_json: Path, results: Path, seconds: dict[str, float]) -> dict:
    """Keypoint AP / AP50 / AP75 of ``results`` on ``val_json``, the box AP of detected boxes (None for the
    ground-truth ones) and the wall times."""
    types = ["keypoints"] if boxes == GT_BOXES else ["bbox", "keypoints"]
    metrics = evaluate(val_json, results, types)
    kp = metrics["keypoints"]
    return {"method": method, "boxes": boxes, "kp_AP": kp["AP"], "kp_AP50": kp["AP50"], "kp_AP75": kp["AP75"],
            "box_AP": metrics["bbox"]["AP"] if "bbox" in metrics else None, **seconds}


def compare(args: argparse.Namespace, root: Path) -> list[dict]:
    """Train both networks into ``root`` (unless given), predict the validation split, score it."""
    root.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else root / "data"
    if not args.data:
        generate(data, train=args.train, val=args.val, size=args.size, seed=args.seed, progress=False)
    val_json, val_images = data / "annotations" / "instances_val.json", data / "val"
    common = ["--data", str(data), "--backbone", args.backbone, "--iters", str(args.iters), "--eval-every",
              str(args.iters), "--device", args.device, "--no-tensorboard", "--no-progress"]
    det_init, pose_init = [], []
    if args.backbone_from:
        det_init = ["--backbone-weights", str(extract_backbone(Path(args.backbone_from), root / "backbone.pt"))]
        pose_init = ["--backbone-init", args.backbone_from, "--backbone-init-prefix", "backbone.body."]
    det_size = ["--min-size", str(args.input), "--max-size", str(args.input)] if args.input else []
    if args.keypoint_rcnn:
        det_run, det_train = Path(args.keypoint_rcnn), None
    else:
        det_run = root / "keypoint_rcnn"
        det_train = run(["detect", "train", "--detector", "keypoint_rcnn", *common, *det_init, *det_size,
                         "--batch-size", str(args.batch_size), "--out", str(det_run), *shlex.split(args.det_args)])
    if args.topdown:
        pose_run, pose_train = Path(args.topdown), None
    else:
        pose_run = root / "topdown"
        pose_train = run(["pose", "train", *common, *pose_init, "--batch-size", str(args.pose_batch_size),
                          "--input-size", *map(str, args.pose_input_size), "--out", str(pose_run),
                          *shlex.split(args.pose_args)])
    det_results, gt_results, det_box_results = (root / f"{name}.json" for name in (
        "keypoint_rcnn_results", "topdown_gt_boxes_results", "topdown_detector_boxes_results"))
    det_predict = run(["detect", "predict", "--checkpoint", str(det_run), "--images", str(val_images), "--ann",
                       str(val_json), "--out", str(det_results), "--device", args.device, "--no-progress"])
    pose_on = ["pose", "predict", "--checkpoint", str(pose_run), "--images", str(val_images), "--ann", str(val_json),
               "--device", args.device]
    gt_predict = run([*pose_on, "--gt-boxes", "--out", str(gt_results)])
    det_box_predict = run([*pose_on, "--boxes", str(det_results), "--out", str(det_box_results)])
    return [
        row("keypoint_rcnn", "own", val_json, det_results, {"train_s": det_train, "predict_s": det_predict}),
        row("topdown", GT_BOXES, val_json, gt_results, {"train_s": pose_train, "predict_s": gt_predict}),
        row("topdown", "keypoint_rcnn", val_json, det_box_results,
            {"train_s": pose_train, "predict_s": det_predict + det_box_predict}),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder like `densevision data synth` output (default: generate one)")
    parser.add_argument("--train", type=int, default=200, help="generated training images (default 200)")
    parser.add_argument("--val", type=int, default=50, help="generated validation images (default 50)")
    parser.add_argument("--size", type=int, default=256, help="generated image side (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="generated data seed")
    parser.add_argument("--backbone", default="hrnet_w18_small", help="zoo model or timm:<name> under both networks")
    parser.add_argument("--iters", type=int, default=2000, help="training iterations of each network")
    parser.add_argument("--batch-size", type=int, default=4, help="Keypoint R-CNN images per iteration (default 4)")
    parser.add_argument("--pose-batch-size", type=int, default=32, help="top-down crops per iteration (default 32)")
    parser.add_argument("--pose-input-size", type=int, nargs=2, default=[128, 128], metavar=("H", "W"),
                        help="top-down crop size (default 128 128: the synthetic shapes are square-ish)")
    parser.add_argument("--input", type=int, help="Keypoint R-CNN input side (--min-size = --max-size; default: "
                        "the detector's)")
    parser.add_argument("--backbone-from", help="densevision detector checkpoint whose backbone starts both networks")
    parser.add_argument("--topdown", help="a trained pose checkpoint or run to compare with (default: train one)")
    parser.add_argument("--keypoint-rcnn", help="a trained Keypoint R-CNN checkpoint or run (default: train one)")
    parser.add_argument("--det-args", default="", help="extra `detect train` flags, e.g. '--heads torchvision'")
    parser.add_argument("--pose-args", default="--rotation 0",
                        help="extra `pose train` flags (default '--rotation 0': the synthetic shapes' keypoints are "
                        "named by their place on screen, which rotation would change)")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--out", help="keep the data, runs and results here (default: a temporary folder)")
    parser.add_argument("--json", help="also write the table here")
    args = parser.parse_args()
    if args.out:
        rows = compare(args, Path(args.out))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            rows = compare(args, Path(tmp))
    print(f"\n{'method':<14} {'boxes':<14} {'kp AP':>6} {'AP50':>6} {'AP75':>6} {'box AP':>7} {'train s':>8} "
          f"{'predict s':>9}")
    for r in rows:
        print(f"{r['method']:<14} {r['boxes']:<14} {r['kp_AP']:>6.1f} {r['kp_AP50']:>6.1f} {r['kp_AP75']:>6.1f} "
              f"{'-' if r['box_AP'] is None else format(r['box_AP'], '.1f'):>7} "
              f"{'-' if r['train_s'] is None else format(r['train_s'], '.1f'):>8} "
              f"{r['predict_s']:>9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
