"""Instance segmentation: Mask R-CNN over zoo / timm backbones, training, prediction, COCO results.

Library entry points (the CLI's ``train`` / ``predict`` are thin wrappers around them):

- ``build_mask_rcnn(backbone, num_classes, **options)`` -> torchvision ``MaskRCNN`` with ``.config``;
- ``train_detector(train_json=, train_images=, out_dir=, val_json=, val_images=, backbone=, iters=, ...)``;
- ``load_detector(checkpoint) -> (model, info)``, ``run_detector(model, ImageDataset, label_to_cat)``,
  ``predict(checkpoint, images, out, ann=, viz_dir=)``, ``export_detector(checkpoint, out)``;
- ``detections_to_coco(outputs, image_ids, label_to_cat)`` for torchvision outputs -> COCO results.
"""

from densevision.detection.mask_rcnn import HEAD_PRESETS, DenseMaskRCNN, build_mask_rcnn
from densevision.detection.predict import (
    DetectorInfo,
    ImageDataset,
    ImageRecord,
    export_detector,
    load_detector,
    predict,
    run_detector,
)
from densevision.detection.results import detections_to_coco, write_results
from densevision.detection.train import train_detector

__all__ = [
    "HEAD_PRESETS",
    "DenseMaskRCNN",
    "DetectorInfo",
    "ImageDataset",
    "ImageRecord",
    "build_mask_rcnn",
    "detections_to_coco",
    "export_detector",
    "load_detector",
    "predict",
    "run_detector",
    "train_detector",
    "write_results",
]
