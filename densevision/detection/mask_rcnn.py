"""Mask R-CNN, Cascade Mask R-CNN and Keypoint R-CNN over any zoo or timm backbone, assembled from torchvision's
detection parts.

``build_mask_rcnn("hrnet_w18_small", 5)`` wires: body -> FPN (HRNetV2p for HRNet) -> RPN
(``AnchorGenerator`` with one anchor size per level, ``anchor_scale × stride``) -> ``RoIHeads``
(``MultiScaleRoIAlign``, two-layer box MLP, four-conv mask head). Normalisation comes from the body's
``pretrained_cfg``, the padding multiple from its largest stride, anchor sizes from its strides; only the head
sizes are choices (``heads="light"`` or ``"torchvision"`` presets, each value overridable); the builder's
options and their defaults are :class:`~densevision.detection.config.MaskRCNNConfig`. With
``detector="cascade_mask_rcnn"`` the same body, neck and RPN feed
:class:`~densevision.detection.cascade.CascadeRoIHeads` instead of ``RoIHeads``; with ``detector="keypoint_rcnn"``
torchvision's ``RoIHeads`` get its keypoint branch (14×14 RoIAlign, a conv stack, 56×56 heatmaps, one channel per
keypoint of the stacked layout) and, unless ``keypoint_masks``, lose the mask branch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.transform import GeneralizedRCNNTransform, resize_boxes, resize_keypoints
from torchvision.ops import MultiScaleRoIAlign

from densevision.detection.backbone import DetectionBackbone, build_detection_backbone
from densevision.detection.cascade import build_cascade_roi_heads
from densevision.detection.config import HEAD_SIZE_KEYS, MaskRCNNConfig
from densevision.detection.heads import (
    BOX_POOL,
    KEYPOINT_POOL,
    MASK_POOL,
    build_box_head,
    build_keypoint_branch,
    build_mask_branch,
)
from densevision.engine.config import from_dict, to_dict
from densevision.errors import DenseVisionError
from densevision.models.pretrained import backbone_weights

HEAD_PRESETS: dict[str, dict[str, int]] = {
    # Reference probe (hrnet_w18_small + FPN, batch 4, 192², 2 idle CPU cores): "torchvision" > 8 s per
    # iteration, "light" about 1.7 s.
    "light": {
        "fpn_channels": 128,
        "mask_head_channels": 128,
        "box_head_dim": 256,
        "rois_per_image": 64,
        "rpn_pre_nms_top_n_train": 600,
        "rpn_post_nms_top_n_train": 300,
        "rpn_pre_nms_top_n_test": 600,
        "rpn_post_nms_top_n_test": 300,
        "keypoint_head_channels": 128,
        "keypoint_head_layers": 4,
    },
    "torchvision": {
        "fpn_channels": 256,
        "mask_head_channels": 256,
        "box_head_dim": 1024,
        "rois_per_image": 512,
        "rpn_pre_nms_top_n_train": 2000,
        "rpn_post_nms_top_n_train": 2000,
        "rpn_pre_nms_top_n_test": 1000,
        "rpn_post_nms_top_n_test": 1000,
        "keypoint_head_channels": 512,
        "keypoint_head_layers": 8,
    },
}


class SizeSafeTransform(GeneralizedRCNNTransform):
    """torchvision's resize / normalise / batch transform, resizing to an explicit size of at least one pixel
    per side: torchvision's own ``floor(side × scale)`` becomes 0 for extreme aspect ratios (a 500×4 image with
    ``max_size`` 64) and fails. Elsewhere the output size and values are torchvision's."""

    def resize(
        self, image: torch.Tensor, target: dict[str, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor] | None]:
        h, w = image.shape[-2:]
        size = self.torch_choice(self.min_size) if self.training else self.min_size[-1]
        scale = min(size / min(h, w), self.max_size / max(h, w))
        out = (max(1, int(h * scale)), max(1, int(w * scale)))
        image = F.interpolate(image[None], size=out, mode="bilinear", align_corners=False)[0]
        if target is None:
            return image, target
        target = dict(target)
        target["boxes"] = resize_boxes(target["boxes"], (h, w), out)
        if "masks" in target:
            target["masks"] = F.interpolate(target["masks"][:, None].float(), size=out)[:, 0].byte()
        if "keypoints" in target:
            target["keypoints"] = resize_keypoints(target["keypoints"], (h, w), out)
        return image, target


class DenseMaskRCNN(MaskRCNN):
    """torchvision ``MaskRCNN`` (or the cascade: its ``roi_heads`` a ``CascadeRoIHeads``; or Keypoint R-CNN: its
    ``roi_heads`` with a keypoint branch, with or without the mask branch) that remembers how it was built.

    ``config`` is a JSON-serialisable dict such that ``build_mask_rcnn(**config)`` rebuilds the same
    architecture (weights excluded); checkpoints store it so prediction needs nothing else.
    """

    config: dict[str, Any]

    def set_test_size(self, short_side: int) -> None:
        """Resize images at inference so their short side is ``short_side`` pixels; the long-side cap keeps the
        built ratio (``max_size / min_size``). Training sizes and the weights are unchanged."""
        if short_side < 1:
            raise DenseVisionError(f"input size must be a positive number of pixels, got {short_side}")
        ratio = self.transform.max_size / self.transform.min_size[-1]
        self.transform.min_size = (int(short_side),)
        self.transform.max_size = max(int(short_side), round(short_side * ratio))


def build_mask_rcnn(
    backbone: str | MaskRCNNConfig,
    num_classes: int,
    *,
    num_keypoints: int | None = None,
    trust_checkpoint: bool = False,
    **options: Any,
) -> DenseMaskRCNN:
    """Build a Mask R-CNN, Cascade Mask R-CNN or Keypoint R-CNN (``detector``) for ``num_classes`` object
    categories (labels ``1..num_classes``; 0 is background).

    ``backbone`` is a :class:`~densevision.detection.config.MaskRCNNConfig`, or the backbone name with the
    other fields of that config as keyword ``options`` (their defaults and meaning are documented there):

        backbone: zoo model name (``"swin_tiny_patch4_window7_224"``, ``"hrnet_w18_small"``, ...) or
            ``"timm:<name>"`` for any timm model with ``features_only``.
        backbone_kwargs / backbone_weights: backbone constructor overrides / starting weights: a checkpoint
            (classification checkpoints are converted; ``trust_checkpoint`` allows one that needs full
            unpickling), ``"auto"`` (ImageNet weights when cached or downloadable) or ``"none"``; keyword options
            start without weights unless ``backbone_weights`` is given, a ``MaskRCNNConfig`` with its own.
        freeze_at: freeze the stem (1) and the first ``freeze_at - 1`` stages.
        frozen_bn: replace body BatchNorms by ``FrozenBatchNorm2d``; default: only when backbone weights load.
        heads: head-size preset, ``"light"`` (CPU-friendly) or ``"torchvision"``; the head sizes
            (``HEAD_SIZE_KEYS``) override single values of it.
        min_size, max_size: images are resized so the short side is ``min_size`` (a random choice from a
            list while training) and the long side at most ``max_size``; default: the backbone's
            pretraining size and ``min_size · 1333/800``.
        image_mean, image_std: normalisation; default: the backbone's ``pretrained_cfg``.
        anchor_scale: anchor size of a level = ``anchor_scale × stride``, at each of ``aspect_ratios``.
        box_head: ``"2fc"`` or ``"4conv1fc"`` (:func:`~densevision.detection.heads.build_box_head`).
        detector: ``"mask_rcnn"`` or ``"cascade_mask_rcnn"``; the ``cascade_*`` options set the stages' IoUs,
            loss weights, coder stds, class-agnostic regression, box loss, mask-head style and score averaging.
            ``"keypoint_rcnn"`` predicts boxes and ``num_keypoints`` heatmap channels per detection (the stacked
            channels of every category's keypoints, :class:`~densevision.data.keypoints.KeypointLayout`), and
            masks too with ``keypoint_masks``; ``keypoint_head_channels`` / ``keypoint_head_layers`` size its
            conv stack.
        box_score_thresh, box_nms_thresh, box_detections_per_img: inference post-processing.

    The model's ``config`` is the resolved builder config (presets and defaults filled in, ``num_classes`` and
    for Keypoint R-CNN ``num_keypoints`` added, ``backbone_weights`` dropped): ``build_mask_rcnn(**model.config)``
    rebuilds the architecture.
    """
    if isinstance(backbone, MaskRCNNConfig):
        if options:
            raise DenseVisionError(f"give a MaskRCNNConfig or keyword options, not both ({', '.join(options)})")
        cfg = backbone
    else:
        cfg = from_dict(MaskRCNNConfig, {"backbone": backbone, "backbone_weights": None, **options},
                        "build_mask_rcnn")
    if not isinstance(num_classes, int) or num_classes < 1:
        raise DenseVisionError(f"num_classes must be a positive number of categories, got {num_classes!r}")
    _check_keypoints(cfg, num_keypoints)
    _check_cascade(cfg)
    sizes = {key: getattr(cfg, key) if getattr(cfg, key) is not None else HEAD_PRESETS[cfg.heads][key]
             for key in HEAD_SIZE_KEYS}
    weights = backbone_weights(cfg.backbone, cfg.backbone_weights, overrides=cfg.backbone_kwargs)
    frozen_bn = weights is not None if cfg.frozen_bn is None else cfg.frozen_bn

    net = build_detection_backbone(
        cfg.backbone,
        neck_channels=sizes["fpn_channels"],
        weights=weights,
        trust_checkpoint=trust_checkpoint,
        freeze_at=cfg.freeze_at,
        frozen_bn=frozen_bn,
        body_kwargs=cfg.backbone_kwargs,
    )
    min_size, max_size = _image_sizes(net, cfg.min_size, cfg.max_size)
    image_mean = [float(v) for v in (cfg.image_mean if cfg.image_mean is not None else net.image_mean)]
    image_std = [float(v) for v in (cfg.image_std if cfg.image_std is not None else net.image_std)]

    model = _assemble(
        net,
        num_classes,
        num_keypoints,
        sizes,
        cfg,
        min_size=min_size,
        max_size=max_size,
        image_mean=image_mean,
        image_std=image_std,
    )
    resolved = replace(cfg, backbone_weights=None, frozen_bn=frozen_bn, **sizes, image_mean=image_mean,
                       image_std=image_std, max_size=max_size,
                       min_size=min_size if isinstance(min_size, int) else list(min_size))
    config = to_dict(resolved)
    del config["backbone_weights"]
    keypoints = {} if num_keypoints is None else {"num_keypoints": num_keypoints}
    model.config = {"backbone": cfg.backbone, "num_classes": num_classes, **keypoints, **config}
    return model


def _check_keypoints(cfg: MaskRCNNConfig, num_keypoints: int | None) -> None:
    if cfg.detector != "keypoint_rcnn":
        if num_keypoints is not None:
            raise DenseVisionError(f"num_keypoints is for detector keypoint_rcnn, not {cfg.detector}")
        return
    if not isinstance(num_keypoints, int) or isinstance(num_keypoints, bool) or num_keypoints < 1:
        raise DenseVisionError("detector keypoint_rcnn needs num_keypoints, the positive number of keypoint "
                               f"channels of its data, got {num_keypoints!r}")
    for key in ("keypoint_head_channels", "keypoint_head_layers"):
        value = getattr(cfg, key)
        if value is not None and value < 1:
            raise DenseVisionError(f"{key} must be positive, got {value}")


def _check_cascade(cfg: MaskRCNNConfig) -> None:
    stages = len(cfg.cascade_iou_thresholds)
    if stages < 1 or len(cfg.cascade_stage_weights) != stages or len(cfg.cascade_box_stds) != stages:
        raise DenseVisionError(
            f"cascade_iou_thresholds ({stages}), cascade_stage_weights ({len(cfg.cascade_stage_weights)}) and "
            f"cascade_box_stds ({len(cfg.cascade_box_stds)}) need one entry per stage")
    if any(len(stds) != 4 or min(stds) <= 0 for stds in cfg.cascade_box_stds):
        raise DenseVisionError(f"cascade_box_stds: each stage needs 4 positive values, got {cfg.cascade_box_stds}")


def _image_sizes(
    net: DetectionBackbone, min_size: int | Sequence[int] | None, max_size: int | None
) -> tuple[int | tuple[int, ...], int]:
    if min_size is None:
        min_size = int(net.input_size[-1])
    sizes = (min_size,) if isinstance(min_size, int) else tuple(int(s) for s in min_size)
    if not sizes or min(sizes) < 1:
        raise DenseVisionError(f"min_size must be positive, got {min_size!r}")
    if max_size is None:
        max_size = round(max(sizes) * 1333 / 800)
    if max_size < max(sizes):
        raise DenseVisionError(f"max_size {max_size} is smaller than min_size {max(sizes)}")
    return (sizes[0] if isinstance(min_size, int) else sizes), int(max_size)


def _assemble(
    net: DetectionBackbone, num_classes: int, num_keypoints: int | None, sizes: Mapping[str, int],
    cfg: MaskRCNNConfig, *,
    min_size: int | tuple[int, ...], **kwargs: Any,
) -> DenseMaskRCNN:
    c = net.out_channels
    anchors = AnchorGenerator(
        sizes=tuple((cfg.anchor_scale * s,) for s in net.strides),
        aspect_ratios=(tuple(cfg.aspect_ratios),) * len(net.strides),
    )
    names = net.featmap_names(4)
    mc, dim = sizes["mask_head_channels"], sizes["box_head_dim"]
    cascade = cfg.detector == "cascade_mask_rcnn"
    keypoint = cfg.detector == "keypoint_rcnn"
    no_masks = keypoint and not cfg.keypoint_masks
    # The cascade replaces the RoI heads and Keypoint R-CNN may drop the mask branch after construction;
    # torchvision's constructor still needs its own.
    mask_head, mask_predictor = build_mask_branch(in_channels=c, channels=1 if cascade or no_masks else mc,
                                                  num_classes=num_classes)
    model = DenseMaskRCNN(
        net,
        num_classes=None,
        min_size=min_size,
        rpn_anchor_generator=anchors,
        rpn_pre_nms_top_n_train=sizes["rpn_pre_nms_top_n_train"],
        rpn_post_nms_top_n_train=sizes["rpn_post_nms_top_n_train"],
        rpn_pre_nms_top_n_test=sizes["rpn_pre_nms_top_n_test"],
        rpn_post_nms_top_n_test=sizes["rpn_post_nms_top_n_test"],
        box_roi_pool=MultiScaleRoIAlign(featmap_names=names, output_size=BOX_POOL, sampling_ratio=2),
        box_head=nn.Identity() if cascade else build_box_head(cfg.box_head, in_channels=c, dim=dim),
        box_predictor=nn.Identity() if cascade else FastRCNNPredictor(dim, num_classes + 1),
        box_batch_size_per_image=sizes["rois_per_image"],
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=names, output_size=MASK_POOL, sampling_ratio=2),
        mask_head=mask_head,
        mask_predictor=mask_predictor,
        box_score_thresh=cfg.box_score_thresh,
        box_nms_thresh=cfg.box_nms_thresh,
        box_detections_per_img=cfg.box_detections_per_img,
        **kwargs,
    )
    if cascade:
        model.roi_heads = build_cascade_roi_heads(
            featmap_names=names,
            in_channels=c,
            num_classes=num_classes,
            box_head=cfg.box_head,
            box_head_dim=dim,
            mask_head_channels=mc,
            mask_heads=cfg.cascade_mask_heads,
            class_agnostic=cfg.cascade_class_agnostic,
            iou_thresholds=cfg.cascade_iou_thresholds,
            stage_loss_weights=cfg.cascade_stage_weights,
            box_coder_stds=cfg.cascade_box_stds,
            box_loss=cfg.cascade_box_loss,
            score_average=cfg.cascade_score_average,
            batch_size_per_image=sizes["rois_per_image"],
            score_thresh=cfg.box_score_thresh,
            nms_thresh=cfg.box_nms_thresh,
            detections_per_img=cfg.box_detections_per_img,
        )
    if keypoint:
        heads = model.roi_heads
        if no_masks:
            heads.mask_roi_pool = heads.mask_head = heads.mask_predictor = None
        heads.keypoint_roi_pool = MultiScaleRoIAlign(featmap_names=names, output_size=KEYPOINT_POOL, sampling_ratio=2)
        heads.keypoint_head, heads.keypoint_predictor = build_keypoint_branch(
            in_channels=c, channels=sizes["keypoint_head_channels"], layers=sizes["keypoint_head_layers"],
            num_keypoints=num_keypoints)
    t = model.transform
    model.transform = SizeSafeTransform(t.min_size, t.max_size, t.image_mean, t.image_std,
                                        size_divisible=net.size_divisible)
    return model
