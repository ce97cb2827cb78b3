"""Typed configurations of top-down pose networks and of their training recipe; every default of the pose task
lives here (the official HRNet recipe: Adam lr 1e-3, ×0.1 twice late in training, 256×192 crops, σ = 2,
rotation ±45°, scale ±0.35, flip, half-body crops of persons with probability 0.3).

Torch-free at import: the command line builds its flags from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from densevision.engine.config import TrainConfig


@dataclass
class PoseNetConfig:
    """What :func:`densevision.pose.build_pose_model` builds (the joints come from the data)."""

    model: str | None = field(default=None, metadata={
        "help": "zoo pose network (pose_hrnet_w32, pose_hrnet_w48); or use --backbone"})
    backbone: str | None = field(default=None, metadata={
        "help": "zoo model or timm:<name> under a heatmap head (instead of --model)"})
    head: Literal["simple", "hrnetv2", "vitpose"] = field(default="simple", metadata={
        "help": "heatmap head over --backbone: simple (SimpleBaseline deconvolutions), hrnetv2 (all levels "
                "concatenated at the finest stride) or vitpose (ViTPose's simple decoder on a zoo ViT: ReLU, "
                "bilinear x4, 3x3 conv)"})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "architecture overrides of the model or backbone, e.g. '{width: 16}'"})
    weights: str | None = field(default=None, metadata={
        "help": "checkpoint of the pose network (e.g. an official release) or of the backbone; not saved in "
                "the model spec"})
    backbone_weights: str | None = field(default="auto", metadata={
        "help": "without --weights, the starting weights of the backbone (of the HRNet body of --model): auto "
                "(ImageNet weights when cached or downloadable, else from scratch; none with --backbone-init), "
                "none, or a checkpoint"})
    backbone_init: str | None = field(default=None, metadata={
        "help": "initialise the backbone from this checkpoint's tensors under --backbone-init-prefix (e.g. a "
                "densevision detector on the same backbone)"})
    backbone_init_prefix: str = field(default="backbone.body.", metadata={
        "help": "prefix of those tensors in --backbone-init's state dict"})
    init: str | None = field(default=None, metadata={
        "help": "start the whole pose network (backbone and head) from this pose checkpoint or run, e.g. to "
                "fine-tune it at another --input-size (instead of --weights, --backbone-weights or --backbone-init)"})
    input_size: list[int] = field(default_factory=lambda: [256, 192], metadata={"help": "crop height and width"})
    sigma: float = field(default=2.0, metadata={"help": "Gaussian target sigma in heatmap pixels"})
    target: Literal["rounded", "unbiased"] = field(default="rounded", metadata={
        "help": "Gaussian targets peak at the rounded joint (official) or at the exact joint (DARK's unbiased "
                "encoding)"})
    decode: Literal["quarter", "dark"] = field(default="quarter", metadata={
        "help": "heatmap decoding in validation and, by default, in predict: the quarter-pixel rule or DARK"})


@dataclass
class PoseDataConfig:
    """COCO keypoint training (and optional validation) data, and the crop augmentation."""

    data: str | None = field(default=None, metadata={
        "help": "folder like `densevision data synth` output (annotations/instances_{train,val}.json, train/, "
                "val/)"})
    train_json: str | None = field(default=None, metadata={"help": "COCO keypoint annotations (instead of --data)"})
    train_images: str | None = field(default=None, metadata={"help": "training image folder"})
    val_json: str | None = field(default=None, metadata={"help": "COCO keypoint validation annotations"})
    val_images: str | None = field(default=None, metadata={"help": "validation image folder"})
    kpt_sigmas: list[float] | None = field(default=None, metadata={
        "help": "OKS sigmas of validation categories without 'kpt_sigmas' (one per keypoint)"})
    rotation: float = field(default=45.0, metadata={"help": "random rotation range in degrees"})
    scale: float = field(default=0.35, metadata={"help": "random scale range (1 +- scale)"})
    flip: float = field(default=0.5, metadata={"help": "horizontal flip probability (left/right pairs swapped)"})
    half_body: float = field(default=0.3, metadata={
        "help": "half-body crop probability (COCO person layout with more than 8 labelled keypoints; other "
                "categories get none)"})


def _pose_schedule() -> TrainConfig:
    return TrainConfig(iters=20_000, batch_size=32, lr=1e-3, weight_decay=0.0, schedule="step", warmup_iters=0,
                       eval_every=2000, eval_batch_size=32, checkpoint_every=2000)


@dataclass
class PoseTrainConfig:
    """The pose network's training recipe (``densevision pose train``)."""

    data: PoseDataConfig = field(default_factory=PoseDataConfig)
    model: PoseNetConfig = field(default_factory=PoseNetConfig)
    train: TrainConfig = field(default_factory=_pose_schedule)
