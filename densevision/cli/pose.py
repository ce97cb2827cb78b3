"""``densevision pose train|predict``: top-down keypoint estimation (pose HRNet, or a heatmap head on any zoo or
timm backbone) on COCO keypoint data. ``train``'s flags are generated from
:class:`densevision.pose.config.PoseTrainConfig`."""

from __future__ import annotations

import argparse

from densevision.cli._spec import Group, Verb
from densevision.cli._training import add_training_arguments, run_training
from densevision.cli._types import (
    add_device_argument,
    add_progress_argument,
    add_trust_argument,
    positive_int,
    probability,
)

TRAIN_DESCRIPTION = (
    "Train a top-down pose network on COCO keypoint data (any categories with 'keypoints' names) with periodic "
    "OKS AP on the validation boxes. Every configuration value has a flag, can come from --config FILE.yaml "
    "(e.g. a run's config.yaml) and can be overridden with --set key.path=value. The run directory gets "
    "config.yaml, checkpoints (last.pt, best.pt), metrics.json and eval/; `densevision pose predict --checkpoint "
    "RUN_DIR` needs nothing else."
)
PREDICT_DESCRIPTION = (
    "Predict keypoints in boxes: the ground-truth boxes of --ann (--gt-boxes), the boxes of a COCO results file "
    "(--boxes, e.g. `densevision detect predict` output) or those a densevision detector finds (--detector: "
    "detection then pose in one command, no annotation file needed). Each instance is scored as the official "
    "HRNet test does (box score x mean of the keypoint maxima above 0.2), then duplicates are dropped by OKS-NMS. "
    "Writes COCO keypoint results ({image_id, category_id, keypoints: [x, y, score] x K, score, bbox}) for "
    "`densevision eval --iou-types keypoints`; --viz also draws them. Image ids are --ann's, else 1..N in sorted "
    "file-name order."
)

POSE = Group(
    "pose", "top-down keypoint estimation: train, predict",
    "Top-down pose estimation on COCO keypoint data: train a heatmap network, predict keypoints in boxes.",
    (
        Verb("train", "pose", "train a pose network (pose HRNet or a backbone with a heatmap head)",
             "add_train_arguments", "run_train"),
        Verb("predict", "pose", "predict COCO keypoints in given or detected boxes", "add_predict_arguments",
             "run_predict"),
    ),
)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``pose train``."""
    from densevision.pose.config import PoseTrainConfig

    parser.description = TRAIN_DESCRIPTION
    add_training_arguments(parser, PoseTrainConfig)


def run_train(args: argparse.Namespace) -> int:
    """Train, then print where the run is and its last evaluation."""
    from densevision.engine.config import config_from_args
    from densevision.pose.config import PoseTrainConfig
    from densevision.pose.train import train_pose

    config = config_from_args(args, PoseTrainConfig)
    data = config.data
    return run_training(args, config, train_pose, {
        "--data": data.data, "--train-json": data.train_json, "--train-images": data.train_images,
        "--val-json": data.val_json, "--val-images": data.val_images, "--weights": config.model.weights})


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``pose predict``."""
    parser.description = PREDICT_DESCRIPTION
    parser.add_argument("--checkpoint", required=True, metavar="RUN", help="run directory or checkpoint file")
    parser.add_argument("--images", required=True, metavar="DIR", help="image folder (or one image file)")
    parser.add_argument("--out", required=True, metavar="RESULTS.json", help="COCO keypoint results")
    parser.add_argument("--ann", metavar="GT.json", help="COCO json of the images (ids, file names, boxes)")
    boxes = parser.add_mutually_exclusive_group(required=True)
    boxes.add_argument("--gt-boxes", action="store_true", help="use the ground-truth boxes of --ann")
    boxes.add_argument("--boxes", metavar="R.json", help="COCO results with the boxes (bbox, category_id, score)")
    boxes.add_argument("--detector", metavar="DET",
                       help="densevision detector (`detect train` run directory or checkpoint) to find the boxes "
                            "of the pose network's categories (at the detector's own score threshold)")
    parser.add_argument("--min-box-score", type=probability, default=0.0,
                        help="ignore --boxes / --detector boxes below this score")
    parser.add_argument("--oks-nms", type=probability, default=0.9, metavar="THR",
                        help="drop an instance whose OKS with a higher-scoring one of its image and category is "
                             "above THR (official test: 0.9, the default; 0 disables; categories without OKS "
                             "sigmas are kept whole)")
    parser.add_argument("--no-flip-test", action="store_true", help="skip the flipped pass (twice as fast)")
    parser.add_argument("--decode", choices=("quarter", "dark"),
                        help="heatmap decoding: the quarter-pixel rule or DARK (default: the checkpoint's)")
    parser.add_argument("--viz", metavar="DIR", help="also write one PNG per image with the skeletons drawn")
    parser.add_argument("--viz-score-thr", type=probability, default=0.3,
                        help="minimum instance score drawn in --viz (default 0.3)")
    parser.add_argument("--batch-size", "--batch", type=positive_int, default=32, help="crops per forward pass")
    add_device_argument(parser)
    add_trust_argument(parser)
    add_progress_argument(parser)


def run_predict(args: argparse.Namespace) -> int:
    """Load the network, find the boxes, predict, rescore and suppress duplicates, write the results."""
    from densevision.data.keypoints import KeypointLayout
    from densevision.data.results import write_results
    from densevision.engine import resolve_device
    from densevision.errors import DenseVisionError
    from densevision.io import check_outputs
    from densevision.pose import load_pose_model
    from densevision.pose.nms import oks_nms_results
    from densevision.pose.predict import (
        gt_box_instances,
        image_records,
        predict_keypoints,
        result_box_instances,
        write_keypoint_overlays,
    )

    if args.gt_boxes and args.ann is None:
        raise DenseVisionError("--gt-boxes needs --ann GT.json")
    check_outputs({"--out": args.out, "--viz": args.viz},
                  {"--checkpoint": args.checkpoint, "--images": args.images, "--ann": args.ann,
                   "--boxes": args.boxes, "--detector": args.detector}, folders=("--viz",))
    model, meta = load_pose_model(args.checkpoint, trust_checkpoint=args.trust_checkpoint)
    layout = KeypointLayout(meta["categories"], f"{args.checkpoint} (model spec)")
    device = resolve_device(args.device)
    if args.gt_boxes:
        instances = gt_box_instances(args.ann, args.images, layout)
    elif args.boxes is not None:
        instances = result_box_instances(args.boxes, args.images, layout, ann=args.ann, min_score=args.min_box_score)
    else:
        from densevision.pipelines import detector_pose_instances

        instances = detector_pose_instances(args.detector, image_records(args.images, args.ann), layout,
                                            min_score=args.min_box_score, device=device,
                                            trust_checkpoint=args.trust_checkpoint)
        print(f"{args.detector}: {len(instances)} boxes of the pose network's categories")
    results = predict_keypoints(model.to(device), instances, layout, batch_size=args.batch_size, device=device,
                                flip_test=not args.no_flip_test, decode=args.decode or meta.get("decode", "quarter"),
                                unbiased=meta.get("unbiased", False), progress=not args.no_progress)
    if args.oks_nms > 0:
        found = len(results)
        results = oks_nms_results(results, layout, args.oks_nms, aspect=model.input_size[1] / model.input_size[0])
        print(f"OKS-NMS at {args.oks_nms:g}: {found - len(results)} of {found} instances dropped as duplicates")
    write_results(args.out, results)
    print(f"{len(results)} instances with keypoints written to {args.out}")
    if args.viz is not None:
        written = write_keypoint_overlays(image_records(args.images, args.ann), results, layout, args.viz,
                                          score_thr=args.viz_score_thr)
        print(f"{len(written)} drawings in {args.viz}")
    return 0
