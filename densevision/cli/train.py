"""``densevision detect train`` (alias ``train``): train Mask R-CNN, Cascade Mask R-CNN or Keypoint R-CNN on
COCO-format data (also under ``torchrun -m densevision detect train``). Its flags are generated from
:class:`densevision.detection.config.DetectorTrainConfig`."""

from __future__ import annotations

import argparse

from densevision.cli._training import add_training_arguments, run_training

DESCRIPTION = (
    "Train Mask R-CNN (or Cascade Mask R-CNN: --detector cascade_mask_rcnn) on COCO-format data with periodic "
    "COCO evaluation (bbox, segm, boundary AP). --detector keypoint_rcnn trains Keypoint R-CNN on COCO keypoint "
    "data (categories with 'keypoints' names, any number each): boxes and keypoints (masks too with "
    "--keypoint-masks), evaluated with bbox and keypoint OKS AP. Every "
    "configuration value has a flag, can come from --config FILE.yaml (e.g. a run's config.yaml) and can be "
    "overridden with --set key.path=value. The run directory gets config.yaml, checkpoints (last.pt, best.pt), "
    "metrics.json, loss_curve.png and eval/; `densevision detect predict --checkpoint RUN_DIR` needs nothing else."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the detector's training command."""
    from densevision.detection.config import DetectorTrainConfig

    parser.description = DESCRIPTION
    add_training_arguments(parser, DetectorTrainConfig)


def run(args: argparse.Namespace) -> int:
    """Train, then print where the run is and its last evaluation."""
    from densevision.detection.config import DetectorTrainConfig
    from densevision.detection.train import train_detector
    from densevision.engine.config import config_from_args
    from densevision.models.pretrained import setting_file

    config = config_from_args(args, DetectorTrainConfig)
    data = config.data
    return run_training(args, config, train_detector, {
        "--data": data.data, "--train-json": data.train_json, "--train-images": data.train_images,
        "--val-json": data.val_json, "--val-images": data.val_images,
        "--backbone-weights": setting_file(config.model.backbone_weights)})
