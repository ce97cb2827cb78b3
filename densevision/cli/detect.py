"""``densevision detect train|predict|eval``: the Mask R-CNN instance segmentation task (also Cascade Mask R-CNN
and Keypoint R-CNN).

``train`` and ``predict`` are also the top-level aliases ``densevision train`` and ``densevision predict``;
``detect eval`` is the COCO evaluation of ``densevision eval``.
"""

from __future__ import annotations

from densevision.cli._spec import Group, Verb

TRAIN = Verb("train", "train", "train Mask R-CNN, Cascade or Keypoint R-CNN (any zoo or timm backbone)")
PREDICT = Verb("predict", "predict", "run a trained detector on images")
EVAL = Verb("eval", "eval", "COCO bbox / segm / boundary / keypoint AP of a results json")

DETECT = Group(
    "detect", "Mask R-CNN instance segmentation: train, predict, eval",
    "Mask R-CNN on COCO-format data: train a detector, predict COCO results, evaluate them.",
    (TRAIN, PREDICT, EVAL),
)
