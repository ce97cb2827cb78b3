"""Cascade Mask R-CNN RoI heads (Cai & Vasconcelos, 2018) from torchvision's detection parts.

:class:`CascadeRoIHeads` replaces torchvision's ``RoIHeads`` inside a ``MaskRCNN`` (same call:
``forward(features, proposals, image_shapes, targets) -> (detections, losses)``). Stage ``t`` has its own box
head, predictor and ``BoxCoder`` (weights = 1 / coder std); while training it re-samples its RoIs at its own
IoU threshold from the previous stage's refined boxes plus the ground-truth boxes (mmdetection's
``CascadeRoIHead``), and its losses are multiplied by its stage weight. At test time the classification
logits of all stages are averaged (mmdetection; or their softmax probabilities, detectron2), boxes come
from the last stage's regression, and masks are the mean of every stage's mask head on the final boxes
(one mask head per stage), or the output of a single mask head (detectron2's style).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.models.detection import _utils as det_utils
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.models.detection.roi_heads import maskrcnn_inference, maskrcnn_loss
from torchvision.ops import MultiScaleRoIAlign, generalized_box_iou_loss
from torchvision.ops import boxes as box_ops

from densevision.detection.heads import BOX_POOL, MASK_POOL, BoxHead, build_box_head, build_mask_branch

# mmdetection's cascade (``cascade_mask_rcnn_swin_fpn.py``): stage IoUs, loss weights, coder stds.
STAGE_IOUS = (0.5, 0.6, 0.7)
STAGE_LOSS_WEIGHTS = (1.0, 0.5, 0.25)
STAGE_BOX_STDS = ((0.1, 0.1, 0.2, 0.2), (0.05, 0.05, 0.1, 0.1), (0.033, 0.033, 0.067, 0.067))

ScoreAverage = Literal["logits", "probabilities"]
BoxLoss = Literal["smooth_l1", "giou"]


def cascade_box_predictor(in_features: int, num_classes: int, *, class_agnostic: bool = True) -> FastRCNNPredictor:
    """torchvision ``FastRCNNPredictor`` for ``num_classes`` categories + background: ``forward(N×in) ->
    (N×(K+1) logits, N×4 deltas)`` when ``class_agnostic``, else ``N×4(K+1)`` (one box per class, as
    torchvision's Mask R-CNN; column block 0, the background, is unused)."""
    predictor = FastRCNNPredictor(in_features, num_classes + 1)
    if class_agnostic:
        predictor.bbox_pred = nn.Linear(in_features, 4)
    return predictor


class CascadeRoIHeads(nn.Module):
    """The cascade's box and mask branches, a drop-in for torchvision ``RoIHeads`` (boxes in image pixels).

    Args:
        box_roi_pool / mask_roi_pool: ``MultiScaleRoIAlign`` (7×7 / 14×14), shared by the stages.
        box_heads / box_predictors: one per stage; a head maps ``N×C×7×7`` RoI features to ``N×D``, a predictor
            ``N×D`` to ``(N×(K+1) logits, N×4 or N×4(K+1) deltas)`` (:func:`cascade_box_predictor`).
        mask_heads / mask_predictors: one per stage (mmdetection: every stage trains its own on its positives,
            test masks are averaged) or a single one (detectron2: trained on the last stage's positives,
            applied to the final boxes); ``N×C×14×14 -> N×(K+1)×28×28`` logits.
        iou_thresholds: foreground IoU of each stage (below it is background; no low-quality matches).
        stage_loss_weights: multiplies the losses of each stage.
        box_coder_stds: the delta standard deviations of each stage (``BoxCoder`` weights are their inverses).
        batch_size_per_image, positive_fraction: RoIs sampled per image and stage.
        box_loss: smooth L1 on the deltas (torchvision's, beta 1/9) or GIoU on the decoded boxes times
            ``giou_loss_weight`` (mmdetection's ``reg_decoded_bbox``); both summed over positives and divided
            by the number of sampled RoIs.
        score_average: average the stages' ``logits`` then apply softmax (mmdetection), or average their
            softmax ``probabilities`` (detectron2).
        score_thresh, nms_thresh, detections_per_img: inference post-processing, as torchvision's.

    Training losses: ``loss_classifier_stage{t}``, ``loss_box_reg_stage{t}`` (t = 1..T, weights applied),
    ``loss_mask_stage{t}`` with per-stage mask heads or ``loss_mask`` with a single one. Inference output per
    image: ``boxes`` (n×4), ``labels`` (n), ``scores`` (n), ``masks`` (n×1×28×28 probabilities).
    """

    def __init__(
        self,
        *,
        box_roi_pool: MultiScaleRoIAlign,
        box_heads: Sequence[nn.Module],
        box_predictors: Sequence[nn.Module],
        mask_roi_pool: MultiScaleRoIAlign,
        mask_heads: Sequence[nn.Module],
        mask_predictors: Sequence[nn.Module],
        iou_thresholds: Sequence[float] = STAGE_IOUS,
        stage_loss_weights: Sequence[float] = STAGE_LOSS_WEIGHTS,
        box_coder_stds: Sequence[Sequence[float]] = STAGE_BOX_STDS,
        batch_size_per_image: int = 512,
        positive_fraction: float = 0.25,
        box_loss: BoxLoss = "smooth_l1",
        giou_loss_weight: float = 10.0,
        score_average: ScoreAverage = "logits",
        score_thresh: float = 0.05,
        nms_thresh: float = 0.5,
        detections_per_img: int = 100,
    ) -> None:
        super().__init__()
        stages = len(box_heads)
        lengths = {len(box_predictors), len(iou_thresholds), len(stage_loss_weights), len(box_coder_stds)}
        if stages < 1 or lengths != {stages}:
            raise ValueError("box heads, predictors, IoU thresholds, loss weights and coder stds differ in number")
        if len(mask_heads) != len(mask_predictors) or len(mask_heads) not in (1, stages):
            raise ValueError(f"give one mask head or one per stage ({stages}), with as many predictors")
        if box_loss not in ("smooth_l1", "giou") or score_average not in ("logits", "probabilities"):
            raise ValueError(f"unknown box_loss {box_loss!r} or score_average {score_average!r}")
        self.box_roi_pool = box_roi_pool
        self.box_heads = nn.ModuleList(box_heads)
        self.box_predictors = nn.ModuleList(box_predictors)
        self.mask_roi_pool = mask_roi_pool
        self.mask_heads = nn.ModuleList(mask_heads)
        self.mask_predictors = nn.ModuleList(mask_predictors)
        self.matchers = [det_utils.Matcher(t, t, allow_low_quality_matches=False) for t in iou_thresholds]
        self.box_coders = [det_utils.BoxCoder(tuple(1.0 / s for s in stds)) for stds in box_coder_stds]
        self.iou_thresholds = [float(t) for t in iou_thresholds]
        self.stage_loss_weights = [float(w) for w in stage_loss_weights]
        self.fg_bg_sampler = det_utils.BalancedPositiveNegativeSampler(batch_size_per_image, positive_fraction)
        self.box_loss = box_loss
        self.giou_loss_weight = float(giou_loss_weight)
        self.score_average = score_average
        self.score_thresh = score_thresh
        self.nms_thresh = nms_thresh
        self.detections_per_img = detections_per_img

    @property
    def num_stages(self) -> int:
        return len(self.box_heads)

    @property
    def mask_per_stage(self) -> bool:
        """True with one mask head per stage (mmdetection), False with a single head (detectron2)."""
        return len(self.mask_heads) == self.num_stages

    # ------------------------------------------------------------------------------------------ training
    def sample(
        self, stage: int, proposals: list[torch.Tensor], targets: list[dict[str, torch.Tensor]]
    ) -> tuple[list[torch.Tensor], list[torch.Tensor], list[torch.Tensor], list[torch.Tensor]]:
        """RoIs of ``stage`` (0-based): the proposals plus the ground-truth boxes, labelled at the stage's IoU
        and sampled. Returns per image ``(rois R×4, labels R (0 = background), matched gt index R (clamped
        to 0 for background), is_gt R bool)``."""
        rois, labels, matched, is_gt = [], [], [], []
        for props, target in zip(proposals, targets, strict=True):
            gt_boxes, gt_labels = target["boxes"].to(props.dtype), target["labels"]
            boxes = torch.cat([props, gt_boxes])
            from_gt = torch.cat([torch.zeros(len(props), dtype=torch.bool, device=props.device),
                                 torch.ones(len(gt_boxes), dtype=torch.bool, device=props.device)])
            if len(gt_boxes) == 0:
                index = torch.zeros(len(boxes), dtype=torch.int64, device=props.device)
                label = torch.zeros(len(boxes), dtype=torch.int64, device=props.device)
            else:
                found = self.matchers[stage](box_ops.box_iou(gt_boxes, boxes))
                index = found.clamp(min=0)
                label = gt_labels[index].to(torch.int64)
                label[found == det_utils.Matcher.BELOW_LOW_THRESHOLD] = 0
                label[found == det_utils.Matcher.BETWEEN_THRESHOLDS] = -1
            rois.append(boxes)
            labels.append(label)
            matched.append(index)
            is_gt.append(from_gt)
        positive, negative = self.fg_bg_sampler(labels)
        keep = [torch.where(p | n)[0] for p, n in zip(positive, negative, strict=True)]
        return ([r[k] for r, k in zip(rois, keep, strict=True)], [lab[k] for lab, k in zip(labels, keep, strict=True)],
                [m[k] for m, k in zip(matched, keep, strict=True)], [g[k] for g, k in zip(is_gt, keep, strict=True)])

    def box_losses(
        self, stage: int, class_logits: torch.Tensor, deltas: torch.Tensor, rois: torch.Tensor,
        labels: torch.Tensor, gt_boxes: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-entropy over ``N×(K+1)`` logits and the box loss of the positives (see the class doc)."""
        loss_cls = F.cross_entropy(class_logits, labels)
        pos = torch.where(labels > 0)[0]
        pred = _select(deltas, labels)[pos]
        coder = self.box_coders[stage]
        if self.box_loss == "giou":
            boxes = coder.decode_single(pred, rois[pos])
            loss_box = self.giou_loss_weight * generalized_box_iou_loss(boxes, gt_boxes[pos], reduction="sum")
        else:
            target = coder.encode_single(gt_boxes[pos], rois[pos])
            loss_box = F.smooth_l1_loss(pred, target, beta=1 / 9, reduction="sum")
        return loss_cls, loss_box / max(labels.numel(), 1)

    # ------------------------------------------------------------------------------------------ stages
    def run_stage(
        self, stage: int, features: dict[str, torch.Tensor], rois: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N×(K+1) logits, N×4 or N×4(K+1) deltas)`` of ``stage`` for the RoIs of all images."""
        x = self.box_heads[stage](self.box_roi_pool(features, rois, image_shapes))
        return self.box_predictors[stage](x)

    def refine(
        self, stage: int, deltas: torch.Tensor, class_logits: torch.Tensor, rois: list[torch.Tensor],
        image_shapes: list[tuple[int, int]], labels: list[torch.Tensor] | None = None,
    ) -> list[torch.Tensor]:
        """The RoIs regressed by ``stage`` and clipped to their images (detached): the next stage's input.
        Class-specific deltas use ``labels`` where positive, else the best foreground class."""
        guess = class_logits[:, 1:].argmax(dim=1) + 1
        if labels is not None:
            given = torch.cat(labels)
            guess = torch.where(given > 0, given, guess)
        boxes = self.box_coders[stage].decode_single(_select(deltas, guess).detach(), torch.cat(rois))
        out = []
        for b, shape in zip(boxes.split([len(r) for r in rois]), image_shapes, strict=True):
            out.append(box_ops.clip_boxes_to_image(b, shape))
        return out

    def forward(
        self,
        features: dict[str, torch.Tensor],
        proposals: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]] | None = None,
    ) -> tuple[list[dict[str, torch.Tensor]], dict[str, torch.Tensor]]:
        if self.training:
            if targets is None:
                raise ValueError("targets should not be None when training")
            return [], self._forward_train(features, proposals, image_shapes, targets)
        return self._forward_test(features, proposals, image_shapes), {}

    def _forward_train(
        self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes: list[tuple[int, int]],
        targets: list[dict[str, torch.Tensor]],
    ) -> dict[str, torch.Tensor]:
        losses: dict[str, torch.Tensor] = {}
        rois = [p.detach() for p in proposals]
        for stage in range(self.num_stages):
            rois, labels, matched, is_gt = self.sample(stage, rois, targets)
            gt_boxes = [t["boxes"][m] if len(t["boxes"]) else torch.zeros_like(r)
                        for t, m, r in zip(targets, matched, rois, strict=True)]
            class_logits, deltas = self.run_stage(stage, features, rois, image_shapes)
            loss_cls, loss_box = self.box_losses(stage, class_logits, deltas, torch.cat(rois), torch.cat(labels),
                                                 torch.cat(gt_boxes))
            weight = self.stage_loss_weights[stage]
            losses[f"loss_classifier_stage{stage + 1}"] = weight * loss_cls
            losses[f"loss_box_reg_stage{stage + 1}"] = weight * loss_box
            last = stage == self.num_stages - 1
            if self.mask_per_stage or last:
                loss_mask = self._mask_loss(stage if self.mask_per_stage else 0, features, rois, labels, matched,
                                            image_shapes, targets)
                if self.mask_per_stage:
                    losses[f"loss_mask_stage{stage + 1}"] = weight * loss_mask
                else:
                    losses["loss_mask"] = loss_mask
            if not last:
                refined = self.refine(stage, deltas, class_logits, rois, image_shapes, labels)
                rois = [r[~g] for r, g in zip(refined, is_gt, strict=True)]
        return losses

    def _mask_loss(
        self, head: int, features: dict[str, torch.Tensor], rois: list[torch.Tensor], labels: list[torch.Tensor],
        matched: list[torch.Tensor], image_shapes: list[tuple[int, int]], targets: list[dict[str, torch.Tensor]],
    ) -> torch.Tensor:
        positive = [torch.where(lab > 0)[0] for lab in labels]
        pos_rois = [r[p] for r, p in zip(rois, positive, strict=True)]
        logits = self._mask_logits(head, features, pos_rois, image_shapes)
        if sum(len(p) for p in positive) == 0:
            return logits.sum() * 0
        return maskrcnn_loss(logits, pos_rois, [t["masks"] for t in targets], [t["labels"] for t in targets],
                             [m[p] for m, p in zip(matched, positive, strict=True)])

    def _mask_logits(
        self, head: int, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
        image_shapes: list[tuple[int, int]],
    ) -> torch.Tensor:
        x = self.mask_heads[head](self.mask_roi_pool(features, boxes, image_shapes))
        return self.mask_predictors[head](x)

    # ------------------------------------------------------------------------------------------ inference
    def _forward_test(
        self, features: dict[str, torch.Tensor], proposals: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> list[dict[str, torch.Tensor]]:
        rois = proposals
        stage_logits = []
        for stage in range(self.num_stages):
            class_logits, deltas = self.run_stage(stage, features, rois, image_shapes)
            stage_logits.append(class_logits)
            if stage < self.num_stages - 1:
                rois = self.refine(stage, deltas, class_logits, rois, image_shapes)
        scores = average_scores(stage_logits, self.score_average)
        boxes = self.box_coders[-1].decode_single(deltas, torch.cat(rois))
        boxes = boxes.reshape(len(scores), deltas.shape[1] // 4, 4)
        sizes = [len(r) for r in rois]
        detections = [self.postprocess(b, s, shape) for b, s, shape in zip(
            boxes.split(sizes), scores.split(sizes), image_shapes, strict=True)]
        final = [d["boxes"] for d in detections]
        labels = [d["labels"] for d in detections]
        heads = range(len(self.mask_heads))
        probs = [maskrcnn_inference(self._mask_logits(h, features, final, image_shapes), labels) for h in heads]
        for i, d in enumerate(detections):
            d["masks"] = torch.stack([p[i] for p in probs]).mean(dim=0)
        return detections

    def postprocess(
        self, boxes: torch.Tensor, scores: torch.Tensor, image_shape: tuple[int, int]
    ) -> dict[str, torch.Tensor]:
        """One image's ``N×(K+1)×4`` boxes (or ``N×1×4`` class-agnostic) and ``N×(K+1)`` probabilities ->
        detections: per class score threshold, small-box removal, NMS, the ``detections_per_img`` best."""
        num_classes = scores.shape[1]
        boxes = box_ops.clip_boxes_to_image(boxes.expand(-1, num_classes, -1), image_shape)[:, 1:].reshape(-1, 4)
        labels = torch.arange(num_classes, device=scores.device).expand_as(scores)[:, 1:].reshape(-1)
        scores = scores[:, 1:].reshape(-1)
        keep = torch.where(scores > self.score_thresh)[0]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
        return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}


def average_scores(stage_logits: Sequence[torch.Tensor], how: ScoreAverage = "logits") -> torch.Tensor:
    """Class probabilities ``N×(K+1)`` from every stage's logits: softmax of their mean (``"logits"``,
    mmdetection) or mean of their softmax (``"probabilities"``, detectron2)."""
    if how == "logits":
        return F.softmax(torch.stack(list(stage_logits)).mean(dim=0), dim=-1)
    return torch.stack([F.softmax(s, dim=-1) for s in stage_logits]).mean(dim=0)


def _select(deltas: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """``N×4`` deltas: the class-agnostic ones, or those of each RoI's label from ``N×4(K+1)``."""
    if deltas.shape[1] == 4:
        return deltas
    rows = torch.arange(len(deltas), device=deltas.device)
    return deltas.reshape(len(deltas), deltas.shape[1] // 4, 4)[rows, labels]



def build_cascade_roi_heads(
    *,
    featmap_names: Sequence[str],
    in_channels: int,
    num_classes: int,
    box_head: BoxHead = "2fc",
    box_head_dim: int = 1024,
    mask_head_channels: int = 256,
    mask_heads: Literal["per_stage", "final"] = "per_stage",
    class_agnostic: bool = True,
    **options: Any,
) -> CascadeRoIHeads:
    """:class:`CascadeRoIHeads` with one ``box_head`` (:func:`~densevision.detection.heads.build_box_head`) and
    predictor per stage, and a mask branch per stage (``"per_stage"``) or one (``"final"``), pooling 7×7 /
    14×14 RoIs from the ``featmap_names`` maps (``in_channels`` each). ``options``: the other keyword
    arguments of :class:`CascadeRoIHeads` (stage count from ``iou_thresholds``)."""
    stages = len(options.get("iou_thresholds", STAGE_IOUS))
    box_heads = [build_box_head(box_head, in_channels=in_channels, dim=box_head_dim) for _ in range(stages)]
    predictors = [cascade_box_predictor(box_head_dim, num_classes, class_agnostic=class_agnostic)
                  for _ in range(stages)]
    if mask_heads not in ("per_stage", "final"):
        raise ValueError(f"unknown mask head style {mask_heads!r} (per_stage or final)")
    branches = [build_mask_branch(in_channels=in_channels, channels=mask_head_channels, num_classes=num_classes)
                for _ in range(stages if mask_heads == "per_stage" else 1)]
    return CascadeRoIHeads(
        box_roi_pool=MultiScaleRoIAlign(featmap_names=list(featmap_names), output_size=BOX_POOL, sampling_ratio=2),
        box_heads=box_heads,
        box_predictors=predictors,
        mask_roi_pool=MultiScaleRoIAlign(featmap_names=list(featmap_names), output_size=MASK_POOL, sampling_ratio=2),
        mask_heads=[head for head, _ in branches],
        mask_predictors=[predictor for _, predictor in branches],
        **options,
    )
