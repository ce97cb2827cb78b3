"""Typed configurations of the segmenter and of its training recipe; every default lives here.

Defaults are the Swin / AS-MLP UperNet recipe on ADE20K (mmsegmentation): AdamW lr 6e-5, betas (0.9, 0.999),
weight decay 0.01 without decay on position tables and norms, linear warm-up over 1500 iterations from
1e-6×, poly decay with power 1.0, 160k iterations of batch 16, 512×512 crops of images rescaled to fit
(2048, 512)·r with r in [0.5, 2], auxiliary loss weight 0.4.

Torch-free at import: the command line builds its flags from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from densevision.engine.config import TrainConfig


@dataclass
class SegmenterConfig:
    """What :func:`densevision.segmentation.build_segmenter` builds (the class count comes from the data)."""

    backbone: str = field(default="swin_tiny_patch4_window7_224", metadata={"help": "zoo name or timm:<model>"})
    head: Literal["upernet", "fpn", "hrnetv2"] = field(default="upernet", metadata={"help": "decode head"})
    weights: str | None = field(default=None, metadata={
        "help": "starting weights of the whole segmenter, heads included (fine-tuning): a checkpoint as "
                "mmsegmentation (the Swin / AS-MLP repositories), HRNet-Semantic-Segmentation or densevision wrote "
                "it, every key mapped; the class count must match. --backbone-weights is then not consulted"})
    backbone_weights: str | None = field(default="auto", metadata={
        "help": "backbone starting weights: auto (ImageNet weights when cached or downloadable, else from "
                "scratch; none with --backbone-init or --weights), none, or a checkpoint of the backbone"})
    backbone_init: str | None = field(default=None, metadata={
        "help": "checkpoint of another model on the same backbone (e.g. a detector) whose backbone tensors "
                "initialise this one"})
    backbone_init_prefix: str = field(default="backbone.body.", metadata={
        "help": "prefix of those tensors in --backbone-init's state dict"})
    channels: int | None = field(default=None, metadata={
        "help": "head width (null: UperNet 512, Semantic FPN 128)"})
    fpn_channels: int = field(default=256, metadata={"help": "Semantic FPN pyramid width"})
    dropout: float = 0.1
    aux: bool | None = field(default=None, metadata={"help": "auxiliary FCN head on stage 3 (null: with UperNet)"})
    aux_channels: int = 256
    aux_weight: float = field(default=0.4, metadata={"help": "weight of the auxiliary loss"})
    backbone_kwargs: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "backbone architecture overrides, e.g. '{width: 8}'"})


@dataclass
class SegDataConfig:
    """The label-map data set (the generic layout, ADE20K, Cityscapes or COCO instance files; see
    :mod:`densevision.data.seg_formats`) and the training pipeline."""

    format: Literal["generic", "ade20k", "cityscapes", "coco"] = field(default="generic", metadata={
        "help": "data layout: generic (--train-images/--train-labels/--classes), ade20k or cityscapes (--data), "
                "coco (--train-json/--train-images)"})
    data: str | None = field(default=None, metadata={
        "help": "data set root (ade20k: ADEChallengeData2016 or its parent; cityscapes: holding leftImg8bit/ and "
                "gtFine/)"})
    train_images: str | None = field(default=None, metadata={"help": "training image folder (generic, coco)"})
    train_labels: str | None = field(default=None, metadata={"help": "training label PNGs (generic)"})
    train_json: str | None = field(default=None, metadata={"help": "COCO instances json of --train-images (coco)"})
    val_images: str | None = field(default=None, metadata={"help": "validation image folder (generic, coco)"})
    val_labels: str | None = field(default=None, metadata={"help": "validation label PNGs (generic)"})
    val_json: str | None = field(default=None, metadata={"help": "COCO instances json of --val-images (coco)"})
    classes: str | None = field(default=None, metadata={"help": "classes.json (a list of class names; generic)"})
    reduce_zero_label: bool = field(default=False, metadata={
        "help": "label 0 = 'other' -> ignored, v -> v-1 (generic; always on with ade20k)"})
    ignore_index: int = 255
    crop: list[int] = field(default_factory=lambda: [512, 512], metadata={"help": "training crop H W"})
    scale: list[int] | None = field(default_factory=lambda: [2048, 512], metadata={
        "help": "rescale images to fit these sides before the random ratio (null: their own size)"})
    ratio_range: list[float] = field(default_factory=lambda: [0.5, 2.0])
    cat_max_ratio: float = 0.75
    flip: float = 0.5
    photometric: bool = True
    val_size: int | None = field(default=None, metadata={
        "help": "validation runs with each image's longer side at this size (null: its own size)"})


@dataclass
class SegSolverConfig:
    """The optimizer beyond the shared ``train`` section."""

    optimizer: Literal["adamw", "sgd"] = "adamw"
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    warmup_factor: float = field(default=1e-6, metadata={"help": "LR factor at the start of the warm-up"})


@dataclass
class SegLossConfig:
    """The decode head's cross-entropy, optionally over the hard pixels only (OHEM as mmsegmentation's
    ``OHEMPixelSampler`` with a threshold; the auxiliary head keeps the plain loss)."""

    ohem: bool = field(default=False, metadata={"help": "online hard example mining in the decode head's loss"})
    ohem_thresh: float = field(default=0.7, metadata={
        "help": "OHEM keeps the pixels whose softmax probability of their true class is below this"})
    ohem_min_kept: int = field(default=100_000, metadata={
        "help": "OHEM raises the threshold so that at least about this many pixels per image are kept"})


def _seg_schedule() -> TrainConfig:
    return TrainConfig(iters=160_000, batch_size=16, lr=6e-5, weight_decay=0.01, schedule="poly", power=1.0,
                       warmup_iters=1500, eval_every=16_000, checkpoint_every=16_000, keep_checkpoints=3,
                       eval_batch_size=1)


@dataclass
class SegTrainConfig:
    """The segmenter's training recipe (``densevision seg train``)."""

    data: SegDataConfig = field(default_factory=SegDataConfig)
    model: SegmenterConfig = field(default_factory=SegmenterConfig)
    loss: SegLossConfig = field(default_factory=SegLossConfig)
    solver: SegSolverConfig = field(default_factory=SegSolverConfig)
    train: TrainConfig = field(default_factory=_seg_schedule)
