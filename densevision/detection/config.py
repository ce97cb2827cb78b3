"""Typed configurations of Mask R-CNN / Cascade Mask R-CNN / Keypoint R-CNN and of their training recipe; every
default of the detector lives here.

Torch-free at import: the command line builds its flags from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from densevision.engine.config import TrainConfig

# The head sizes; None takes the value of the ``heads`` preset (see ``mask_rcnn.HEAD_PRESETS``).
HEAD_SIZE_KEYS = (
    "fpn_channels", "mask_head_channels", "box_head_dim", "rois_per_image", "rpn_pre_nms_top_n_train",
    "rpn_post_nms_top_n_train", "rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test", "keypoint_head_channels",
    "keypoint_head_layers",
)


@dataclass
class MaskRCNNConfig:
    """What :func:`densevision.detection.build_mask_rcnn` builds (besides the number of classes).

    ``detector`` picks Mask R-CNN, Cascade Mask R-CNN (:mod:`densevision.detection.cascade`) or Keypoint R-CNN
    (:mod:`densevision.detection.keypoint_rcnn`: boxes and keypoints, masks too with ``keypoint_masks``); the
    ``cascade_*`` fields only matter for the cascade, the ``keypoint_*`` ones for Keypoint R-CNN, ``box_head``
    for all.
    """

    detector: Literal["mask_rcnn", "cascade_mask_rcnn", "keypoint_rcnn"] = field(default="mask_rcnn", metadata={
        "help": "mask_rcnn, cascade_mask_rcnn (three box stages at IoU 0.5/0.6/0.7), or keypoint_rcnn (boxes and "
                "keypoints of COCO keypoint data; masks too with keypoint_masks)"})
    backbone: str = field(default="hrnet_w18_small", metadata={"help": "zoo model name or timm:<name>"})
    backbone_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "backbone constructor overrides, e.g. '{drop_path_rate: 0.1}'"})
    backbone_weights: str | None = field(default="auto", metadata={
        "help": "backbone starting weights: auto (ImageNet weights when cached or downloadable, else from "
                "scratch), none, or a checkpoint (classification or dense); not saved in the model spec"})
    freeze_at: int = field(default=0, metadata={"help": "freeze the stem (1) and the first N-1 stages"})
    frozen_bn: bool | None = field(default=None, metadata={
        "help": "FrozenBatchNorm in the body (default: only when backbone weights are loaded)"})
    heads: Literal["light", "torchvision"] = field(default="light", metadata={
        "help": "head-size preset: light (CPU-friendly) or torchvision's"})
    fpn_channels: int | None = None
    mask_head_channels: int | None = None
    box_head_dim: int | None = None
    rois_per_image: int | None = None
    rpn_pre_nms_top_n_train: int | None = None
    rpn_post_nms_top_n_train: int | None = None
    rpn_pre_nms_top_n_test: int | None = None
    rpn_post_nms_top_n_test: int | None = None
    keypoint_head_channels: int | None = None
    keypoint_head_layers: int | None = None
    min_size: int | list[int] | None = field(default=None, metadata={
        "help": "short image side (several: random per batch while training); default: training data median"})
    max_size: int | None = field(default=None, metadata={"help": "long image side cap"})
    image_mean: list[float] | None = None
    image_std: list[float] | None = None
    anchor_scale: float = field(default=8.0, metadata={"help": "anchor size = anchor_scale x stride"})
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    box_head: Literal["2fc", "4conv1fc"] = field(default="2fc", metadata={
        "help": "box head: two FC layers, or four 3x3 convs with BatchNorm and one FC (Swin's cascade configs)"})
    cascade_iou_thresholds: list[float] = field(default_factory=lambda: [0.5, 0.6, 0.7], metadata={
        "help": "foreground IoU of each cascade stage (their number is the number of stages)"})
    cascade_stage_weights: list[float] = field(default_factory=lambda: [1.0, 0.5, 0.25], metadata={
        "help": "loss weight of each cascade stage"})
    cascade_box_stds: list[list[float]] = field(default_factory=lambda: [
        [0.1, 0.1, 0.2, 0.2], [0.05, 0.05, 0.1, 0.1], [0.033, 0.033, 0.067, 0.067]], metadata={
        "help": "box-delta standard deviations of each cascade stage"})
    cascade_class_agnostic: bool = field(default=True, metadata={
        "help": "one box regression for all classes (false: one per class, as Swin's 4conv1fc GIoU configs)"})
    cascade_box_loss: Literal["smooth_l1", "giou"] = field(default="smooth_l1", metadata={
        "help": "cascade box loss: smooth L1 on deltas or GIoU (weight 10) on decoded boxes"})
    cascade_mask_heads: Literal["per_stage", "final"] = field(default="per_stage", metadata={
        "help": "one mask head per stage, averaged at test (mmdetection), or one on the final boxes (detectron2)"})
    cascade_score_average: Literal["logits", "probabilities"] = field(default="logits", metadata={
        "help": "average the stages' logits (mmdetection) or their softmax probabilities (detectron2)"})
    keypoint_masks: bool = field(default=False, metadata={
        "help": "keypoint_rcnn: also a mask head (boxes, masks and keypoints, as Mask R-CNN's joint model)"})
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    box_detections_per_img: int = 100


@dataclass
class DetectionDataConfig:
    """COCO-format training (and optional validation) data, and the training augmentation."""

    data: str | None = field(default=None, metadata={
        "help": "folder like `densevision data synth` output (annotations/instances_{train,val}.json, train/, "
                "val/)"})
    train_json: str | None = field(default=None, metadata={"help": "COCO training annotations (instead of --data)"})
    train_images: str | None = field(default=None, metadata={"help": "training image folder"})
    val_json: str | None = field(default=None, metadata={"help": "COCO validation annotations (optional)"})
    val_images: str | None = field(default=None, metadata={"help": "validation image folder"})
    hflip: float = field(default=0.5, metadata={"help": "horizontal flip probability"})
    photometric: bool = field(default=True, metadata={"help": "colour jitter"})


@dataclass
class DetectorTrainConfig:
    """The detector's training recipe (``densevision detect train``)."""

    data: DetectionDataConfig = field(default_factory=DetectionDataConfig)
    model: MaskRCNNConfig = field(default_factory=MaskRCNNConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
