"""Instance segmentation and keypoints: Mask R-CNN, Cascade Mask R-CNN and Keypoint R-CNN over zoo / timm
backbones, training, prediction, COCO results.

Library entry points (the CLI's ``detect train`` / ``predict`` are thin wrappers around them):

- ``build_mask_rcnn(backbone | MaskRCNNConfig, num_classes, **options)`` -> torchvision ``MaskRCNN`` with
  ``.config`` (``detector="cascade_mask_rcnn"``: with ``CascadeRoIHeads``; ``detector="keypoint_rcnn"`` with
  ``num_keypoints``: torchvision's keypoint branch, masks only with ``keypoint_masks``);
- ``train_detector(DetectorTrainConfig, out_dir)``;
- ``load_detector(checkpoint) -> (model, info)``, ``run_detector(model, ImageDataset, label_to_cat)``,
  ``predict(checkpoint, images, out, ann=, viz_dir=)``, ``export_detector(checkpoint, out)``;
- ``detections_to_coco(outputs, image_ids, label_to_cat)`` for torchvision outputs -> COCO results;
- ``KeypointCocoDetection`` (COCO keypoint data in the stacked layout Keypoint R-CNN trains on),
  ``keypoint_channels(layout)``.

Names are imported lazily, so ``densevision.detection.config`` loads without torch.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

_EXPORTS = {
    "cascade": ("CascadeRoIHeads", "build_cascade_roi_heads"),
    "config": ("DetectorTrainConfig", "MaskRCNNConfig"),
    "keypoint_rcnn": ("KeypointCocoDetection", "keypoint_channels", "stacked_keypoints"),
    "mask_rcnn": ("HEAD_PRESETS", "DenseMaskRCNN", "build_mask_rcnn"),
    "mmdet_weights": ("convert_mmdet_state_dict", "load_mmdet_weights"),
    "predict": ("DetectorInfo", "ImageDataset", "ImageRecord", "export_detector", "load_detector", "predict",
                "run_detector"),
    "results": ("detections_to_coco", "write_results"),
    "train": ("DetectionTask", "train_detector"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
