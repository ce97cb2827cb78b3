"""RoI head pieces shared by Mask R-CNN, the cascade and Keypoint R-CNN, built from torchvision's modules.

Box heads map pooled RoI features ``N×C×7×7`` to ``N×D``: ``"2fc"`` is torchvision's ``TwoMLPHead``
(mmdetection's ``Shared2FCBBoxHead``); ``"4conv1fc"`` is torchvision's ``FastRCNNConvFCHead`` with four 3×3
convolutions + BatchNorm and one FC layer (mmdetection's ``Shared4Conv1FCBBoxHead`` with ``norm_cfg``, the head
of Swin's Cascade Mask R-CNN configs). The mask branch maps ``N×C×14×14`` to ``N×(K+1)×28×28`` logits, the
keypoint branch ``N×C×14×14`` to ``N×J×56×56`` heatmap logits (one channel per keypoint).
"""

from __future__ import annotations

from typing import Literal

from torch import nn
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, TwoMLPHead
from torchvision.models.detection.keypoint_rcnn import KeypointRCNNHeads, KeypointRCNNPredictor
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor

BoxHead = Literal["2fc", "4conv1fc"]
BOX_POOL = 7
MASK_POOL = 14
KEYPOINT_POOL = 14


def build_box_head(style: BoxHead, *, in_channels: int, dim: int) -> nn.Module:
    """The box head of ``style`` over ``in_channels``-channel 7×7 RoI features, ``dim`` output features."""
    if style == "2fc":
        return TwoMLPHead(in_channels * BOX_POOL * BOX_POOL, dim)
    if style == "4conv1fc":
        return FastRCNNConvFCHead((in_channels, BOX_POOL, BOX_POOL), [in_channels] * 4, [dim],
                                  norm_layer=nn.BatchNorm2d)
    raise ValueError(f"unknown box head {style!r} (2fc or 4conv1fc)")


def build_mask_branch(*, in_channels: int, channels: int, num_classes: int) -> tuple[MaskRCNNHeads, MaskRCNNPredictor]:
    """torchvision's four-conv mask head (``channels`` wide) and its deconv + 1×1 predictor for ``num_classes``
    categories + background."""
    return MaskRCNNHeads(in_channels, [channels] * 4, 1), MaskRCNNPredictor(channels, channels, num_classes + 1)


def build_keypoint_branch(
    *, in_channels: int, channels: int, layers: int, num_keypoints: int
) -> tuple[KeypointRCNNHeads, KeypointRCNNPredictor]:
    """torchvision's keypoint head (``layers`` 3×3 conv + ReLU, ``channels`` wide; the paper's 8 × 512) and its
    predictor: a 4×4 stride-2 transposed conv to ``num_keypoints`` channels, then bilinear ×2 (14 -> 56)."""
    return KeypointRCNNHeads(in_channels, [channels] * layers), KeypointRCNNPredictor(channels, num_keypoints)
