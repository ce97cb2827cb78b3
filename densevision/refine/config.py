"""Typed configurations of the BPR refinement network and of its training recipe; every default of the
refiner lives here (BPR's recipe: SGD lr 0.01, momentum 0.9, weight decay 5e-4, poly decay with power 0.9
over 160k iterations of batch 32).

Torch-free at import: the command line builds its flags from these classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from densevision.engine.config import TrainConfig

DEFAULT_BACKBONE = "hrnet_w18_small_v2"
DEFAULT_INPUT_SIZE = 128


@dataclass
class RefineNetConfig:
    """What :func:`densevision.refine.network.build_refine_net` builds (the patch size comes from the data)."""

    backbone: str = field(default=DEFAULT_BACKBONE, metadata={"help": "zoo HRNet"})
    backbone_weights: str | None = field(default=None, metadata={"help": "ImageNet HRNet checkpoint of the backbone"})
    input_size: int = field(default=DEFAULT_INPUT_SIZE, metadata={"help": "network input side"})
    overrides: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "backbone architecture overrides, e.g. '{width: 8}'"})


@dataclass
class RefineDataConfig:
    """The patch folders of `densevision bpr patches`."""

    patches: str | None = field(default=None, metadata={"help": "training patch folder"})
    val_patches: str | None = field(default=None, metadata={
        "help": "validation patch folder (default: hold out one instance in val_every_instance of --patches)"})
    val_every_instance: int = 20


@dataclass
class RefineRuleConfig:
    """What ``bpr refine`` changes of a detector's output, chosen on a tuning split disjoint from the demo's
    validation split (``benchmarks/bpr_refine_rule.py``; :mod:`densevision.refine.selection` explains each)."""

    boxes: Literal["keep", "from-mask"] = field(default="keep", metadata={
        "help": "keep the detector's boxes and scores, or recompute boxes from the refined masks"})
    score_thr: float = field(default=0.0, metadata={
        "help": "detections scoring below this keep their coarse mask"})
    top_k: int | None = field(default=None, metadata={
        "help": "refine at most this many highest-scoring detections per image, the others keep their coarse "
                "mask (None: no limit)"})
    min_area: int = field(default=48 * 48, metadata={
        "help": "instances whose coarse mask covers fewer pixels keep it (0 refines all)"})
    margin: float = field(default=0.1, metadata={
        "help": "a pixel keeps its coarse value where the refiner's averaged probability is within this of 0.5"})


def _bpr_schedule() -> TrainConfig:
    return TrainConfig(iters=160_000, batch_size=32, lr=0.01, weight_decay=5e-4, schedule="poly", warmup_iters=0,
                       eval_every=4000, eval_batch_size=64, checkpoint_every=4000, keep_checkpoints=3, workers=2)


@dataclass
class RefineTrainConfig:
    """The refiner's training recipe (``densevision bpr train``)."""

    data: RefineDataConfig = field(default_factory=RefineDataConfig)
    model: RefineNetConfig = field(default_factory=RefineNetConfig)
    train: TrainConfig = field(default_factory=_bpr_schedule)
