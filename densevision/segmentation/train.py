"""Training a segmenter on a label-map data set (the generic layout, ADE20K, Cityscapes or COCO instance files:
:func:`densevision.data.seg_formats.label_map_data`): the segmentation task for :func:`densevision.engine.train_task`.

Recipe (:class:`~densevision.segmentation.config.SegTrainConfig`): mmsegmentation's pipeline
(:class:`~densevision.data.labelmaps.SegTrainTransform`), cross-entropy over the labelled pixels (255 ignored;
with ``loss.ohem`` the decode head's over the hard pixels only, :func:`ohem_mask`) plus ``aux_weight`` × the
auxiliary head's, AdamW without weight decay on norms, biases and position tables,
linear warm-up then poly decay. BatchNorm becomes SyncBatchNorm only under DDP. Validation: whole images
(their longer side at ``data.val_size`` when given), mIoU / aAcc / mAcc
(:class:`~densevision.evaluation.semantic.SemanticEvaluator`); ``best.pt`` by mIoU.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from densevision.data.labelmaps import LabelMapDataset, LabelPairs, SegTrainTransform
from densevision.data.seg_formats import FORMAT_USAGE, label_map_data
from densevision.engine import build_optimizer, build_scheduler, inference_on_dataset, train_task, unwrap_model
from densevision.engine.checkpoint import find_checkpoint
from densevision.errors import DenseVisionError
from densevision.evaluation.semantic import SemanticEvaluator
from densevision.models.pretrained import AUTO, NONE, backbone_weights
from densevision.segmentation.config import SegTrainConfig
from densevision.segmentation.model import Segmenter, build_segmenter, init_backbone_from, segmenter_spec
from densevision.segmentation.predict import image_logits


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, *,
                         keep: torch.Tensor | None = None) -> torch.Tensor:
    """Mean cross-entropy of ``B×K×H×W`` logits over the pixels of ``B×H×W`` labels that are not
    ``ignore_index`` (0, not NaN, when a batch has none). With ``keep`` (``B×H×W`` bool, e.g. :func:`ohem_mask`)
    only the kept pixels add to the sum, which is still divided by the number of labelled pixels, as
    mmsegmentation's pixel-weighted cross-entropy with ``avg_non_ignore``."""
    counted = labels if keep is None else labels.masked_fill(~keep, ignore_index)
    total = F.cross_entropy(logits.float(), counted, ignore_index=ignore_index, reduction="sum")
    return total / (labels != ignore_index).sum().clamp(min=1)


@torch.no_grad()
def ohem_mask(logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, *, thresh: float = 0.7,
              min_kept: int = 100_000) -> torch.Tensor:
    """The hard pixels (mmsegmentation's ``OHEMPixelSampler`` with ``thresh``): ``B×H×W`` bool, True at the
    labelled pixels whose softmax probability of their true class (``B×K×H×W`` logits) is below
    ``max(thresh, p_k)``, where ``p_k`` is the ``k``-th smallest of those probabilities (from 0), ``k = min(B ×
    min_kept, n - 1)`` over the batch's ``n`` labelled pixels: at least about ``min_kept`` pixels per image."""
    labelled = labels != ignore_index
    prob = logits.float().softmax(1).gather(1, labels.masked_fill(~labelled, 0).unsqueeze(1)).squeeze(1)
    valid = prob[labelled]
    if valid.numel() == 0:
        return labelled
    k = min(min_kept * labels.shape[0], valid.numel() - 1)
    threshold = valid.kthvalue(k + 1).values.clamp(min=thresh)
    return labelled & (prob < threshold)


class SegTask:
    """Segmenter training (:class:`densevision.engine.Task`)."""

    best_metric = "mIoU"
    collate_fn = None
    sync_bn = True

    def __init__(self, config: SegTrainConfig) -> None:
        if config.loss.ohem_min_kept < 0:
            raise DenseVisionError(f"--ohem-min-kept {config.loss.ohem_min_kept}: expected a count >= 0")
        self.config = config
        self.classes: list[str] = []
        self.val_set: LabelMapDataset | None = None

    def _dataset(self, split: LabelPairs, reduce_zero: bool, transform: Any = None) -> LabelMapDataset:
        return LabelMapDataset(split.checked(), len(self.classes), reduce_zero=reduce_zero,
                               ignore_index=self.config.data.ignore_index, transform=transform)

    def build_train_data(self) -> LabelMapDataset:
        data = self.config.data
        if len(data.crop) != 2 or min(data.crop) < 1:
            raise DenseVisionError(f"--crop: expected two positive sizes H W, got {data.crop}")
        if self.config.model.head == "upernet" and self.config.train.batch_size < 2:
            raise DenseVisionError("--batch-size 1 with --head upernet: the BatchNorm after its 1x1 pyramid-pooling "
                                   "bin needs at least 2 images per batch in training; use --batch-size 2 or more, "
                                   "or --head fpn / hrnetv2")
        layout = label_map_data(data.format, data=data.data, train_images=data.train_images,
                                train_labels=data.train_labels, val_images=data.val_images, val_labels=data.val_labels,
                                classes=data.classes, reduce_zero_label=data.reduce_zero_label,
                                train_json=data.train_json, val_json=data.val_json)
        if layout.train is None:
            raise DenseVisionError(f"training data needed: --format {data.format} {FORMAT_USAGE[data.format]}")
        self.classes = layout.classes
        transform = SegTrainTransform(data.crop, scale=data.scale, ratio_range=data.ratio_range,
                                      cat_max_ratio=data.cat_max_ratio, flip=data.flip,
                                      photometric=data.photometric, ignore_index=data.ignore_index)
        train_set = self._dataset(layout.train, layout.reduce_zero, transform)
        if layout.val is not None:
            self.val_set = self._dataset(layout.val, layout.reduce_zero)
        return train_set

    def build_model(self) -> Segmenter:
        m = self.config.model
        if m.weights is not None:
            if m.backbone_init is not None or m.backbone_weights not in (AUTO, NONE, None):
                raise DenseVisionError("give the whole segmenter's --weights or the backbone's --backbone-weights "
                                       "/ --backbone-init, not both")
            weights = find_checkpoint(m.weights)
        else:
            # --backbone-init replaces every backbone tensor: under auto, no ImageNet weights are fetched for it.
            setting = None if m.backbone_init is not None and m.backbone_weights == AUTO else m.backbone_weights
            weights = backbone_weights(m.backbone, setting, overrides=m.backbone_kwargs)
        model = build_segmenter(m.backbone, m.head, len(self.classes), weights=weights,
                                require_segmenter=m.weights is not None, channels=m.channels,
                                fpn_channels=m.fpn_channels, dropout=m.dropout, aux=m.aux,
                                aux_channels=m.aux_channels, classes=self.classes, backbone_kwargs=m.backbone_kwargs)
        if m.backbone_init is not None:
            init_backbone_from(model, m.backbone_init, prefix=m.backbone_init_prefix)
        return model

    def build_optimizer(self, model: nn.Module) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler]:
        train, solver = self.config.train, self.config.solver
        optimizer = build_optimizer(model, name=solver.optimizer, lr=train.lr, weight_decay=train.weight_decay,
                                    momentum=train.momentum, betas=tuple(solver.betas), filter_bias_and_bn=True)
        scheduler = build_scheduler(optimizer, max_iters=train.iters, schedule=train.schedule,
                                    warmup_iters=train.warmup_iters, warmup_factor=solver.warmup_factor,
                                    milestones=train.step_milestones(), power=train.power)
        return optimizer, scheduler

    def loss(self, model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        images, labels = batch
        ignore = self.config.data.ignore_index
        out = model(images, return_aux=True)
        loss = self.config.loss
        keep = ohem_mask(out["seg"], labels, ignore, thresh=loss.ohem_thresh, min_kept=loss.ohem_min_kept) \
            if loss.ohem else None
        losses = {"loss_seg": masked_cross_entropy(out["seg"], labels, ignore, keep=keep)}
        if "aux" in out:
            losses["loss_aux"] = self.config.model.aux_weight * masked_cross_entropy(out["aux"], labels, ignore)
        return losses

    def build_evaluator(self, run_dir: Path, device: torch.device) -> Any:
        if self.val_set is None or len(self.val_set) == 0:
            return None
        loader = DataLoader(self.val_set, batch_size=1, shuffle=False)  # whole images of any size
        evaluator = SemanticEvaluator(self.classes, ignore_index=self.config.data.ignore_index)
        size = self.config.data.val_size
        return lambda model: inference_on_dataset(
            model, loader, evaluator, forward=lambda m, batch: image_logits(m, batch[0].to(device), input_size=size))

    def model_spec(self, model: nn.Module) -> dict[str, Any]:
        return segmenter_spec(unwrap_model(model))


def train_segmenter(config: SegTrainConfig, run_dir: str | os.PathLike, *, device: str = "auto",
                    resume: bool = False, progress: bool = True) -> dict[str, Any]:
    """Train a segmenter with ``config`` into ``run_dir`` (checkpoints with the model spec, ``metrics.json``,
    TensorBoard, ``config.yaml``); returns the summary of :func:`densevision.engine.train_task`."""
    return train_task(SegTask(config), run_dir, device=device, resume=resume, progress=progress)
