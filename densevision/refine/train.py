"""Training the BPR network on a patch folder: the refinement task for :func:`densevision.engine.train_task`.

The recipe (:class:`~densevision.refine.config.RefineTrainConfig`) follows BPR: SGD with poly decay,
horizontal flip and photometric distortion, two-class cross-entropy. Validation: patch-level mIoU
(background and foreground IoU over all pixels of the validation patches), next to the coarse masks' mIoU on
the same patches, which is what the network has to beat.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from densevision.engine import inference_on_dataset, train_task
from densevision.errors import DenseVisionError
from densevision.refine.config import RefineTrainConfig
from densevision.refine.dataset import PatchDataset
from densevision.refine.network import RefineNet, build_refine_net, refine_net_spec


def refine_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy of the logits (resized to the patch size) against the ground-truth patches."""
    image, coarse, gt = batch
    return {"loss_ce": F.cross_entropy(model(image, coarse, size=gt.shape[-1]), gt)}


def _iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Intersections and unions of background and foreground: 2×2 (class × [inter, union])."""
    return torch.stack([
        torch.stack([((pred == c) & (gt == c)).sum(), ((pred == c) | (gt == c)).sum()]) for c in (0, 1)
    ]).double()


class PatchMiouEvaluator:
    """Patch-level IoU of the refined and of the coarse masks, in percent (a
    :class:`~densevision.engine.DatasetEvaluator`): ``miou``, ``bg_iou``, ``fg_iou``, ``coarse_miou``."""

    def reset(self) -> None:
        self.refined = torch.zeros(2, 2, dtype=torch.float64)
        self.coarse = torch.zeros(2, 2, dtype=torch.float64)

    def process(self, inputs: Sequence[torch.Tensor], outputs: torch.Tensor) -> None:
        _, coarse, gt = inputs
        self.refined += _iou((outputs > 0.5).cpu().long(), gt)
        self.coarse += _iou(coarse.cpu().long(), gt)

    def evaluate(self) -> dict[str, float]:
        def percent(stats: torch.Tensor) -> list[float]:
            return (100.0 * stats[:, 0] / stats[:, 1].clamp(min=1)).tolist()

        bg, fg = percent(self.refined)
        return {"miou": (bg + fg) / 2, "bg_iou": bg, "fg_iou": fg, "coarse_miou": sum(percent(self.coarse)) / 2}


def patch_miou(model: RefineNet, dataset: PatchDataset, *, batch_size: int = 64,
               device: str | torch.device = "cpu") -> dict[str, float]:
    """:class:`PatchMiouEvaluator`'s metrics of ``model`` over ``dataset``."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
    return inference_on_dataset(model, loader, PatchMiouEvaluator(),
                                forward=lambda m, batch: m.predict(batch[0].to(device), batch[1].to(device)))


class RefineTask:
    """BPR network training on a patch folder (:class:`densevision.engine.Task`)."""

    best_metric = "miou"
    collate_fn = None

    def __init__(self, config: RefineTrainConfig) -> None:
        self.config = config
        self.train_set: PatchDataset | None = None
        self.val_set: PatchDataset | None = None

    def build_train_data(self) -> PatchDataset:
        data = self.config.data
        if data.patches is None:
            raise DenseVisionError("training patches needed: --patches PATCH_DIR")
        if data.val_patches is None:
            train_set = PatchDataset(data.patches, split="train", val_every=data.val_every_instance, augment=True)
            val_set = PatchDataset(data.patches, split="val", val_every=data.val_every_instance)
        else:
            train_set = PatchDataset(data.patches, augment=True)
            val_set = PatchDataset(data.val_patches)
        if len(train_set) == 0:
            raise DenseVisionError(f"{data.patches}: no training patches")
        if val_set.patch_size != train_set.patch_size:
            raise DenseVisionError(f"{data.val_patches}: patch size {val_set.patch_size} differs from the training "
                                   f"patches' {train_set.patch_size}")
        self.train_set, self.val_set = train_set, val_set
        return train_set

    def build_model(self) -> RefineNet:
        model = self.config.model
        return build_refine_net(model.backbone, input_size=model.input_size, patch_size=self.train_set.patch_size,
                                backbone_weights=model.backbone_weights, **model.overrides)

    def loss(self, model: nn.Module, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
        return refine_loss(model, batch)

    def build_evaluator(self, run_dir: Path, device: torch.device) -> Any:
        if len(self.val_set) == 0:
            return None
        val_set, batch_size = self.val_set, self.config.train.eval_batch_size
        return lambda model: patch_miou(model, val_set, batch_size=batch_size, device=device)

    def model_spec(self, model: RefineNet) -> dict[str, Any]:
        return refine_net_spec(model)


def train_refiner(
    config: RefineTrainConfig, run_dir: str | os.PathLike, *, device: str = "auto", resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a BPR network with ``config`` into ``run_dir`` (checkpoints, ``metrics.json``, TensorBoard,
    ``config.yaml``); returns the summary of :func:`densevision.engine.train_task`."""
    return train_task(RefineTask(config), run_dir, device=device, resume=resume, progress=progress)
