"""Training the BPR network on a patch folder with the shared engine.

BPR's recipe: SGD (lr 0.01, momentum 0.9, weight decay 5e-4), poly decay (power 0.9) over 160k iterations
of batch 32, horizontal flip and photometric distortion, two-class cross-entropy. Validation: patch-level
mIoU (background and foreground IoU over all pixels of the validation patches), next to the coarse masks'
mIoU on the same patches, which is what the network has to beat.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from densevision.engine import IterationLoader, Trainer, build_optimizer, build_scheduler
from densevision.errors import DenseVisionError
from densevision.refine.dataset import PatchDataset
from densevision.refine.network import (
    ARCH_KEY,
    DEFAULT_BACKBONE,
    DEFAULT_INPUT_SIZE,
    RefineNet,
    build_refine_net,
)

BEST_METRIC = "miou"


def refine_loss(model: nn.Module, batch: Sequence[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Cross-entropy of the logits (resized to the patch size) against the ground-truth patches."""
    image, coarse, gt = batch
    return {"loss_ce": F.cross_entropy(model(image, coarse, size=gt.shape[-1]), gt)}


def _iou(pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """Intersections and unions of background and foreground: 2×2 (class × [inter, union])."""
    return torch.stack([
        torch.stack([((pred == c) & (gt == c)).sum(), ((pred == c) | (gt == c)).sum()]) for c in (0, 1)
    ]).double()


@torch.no_grad()
def patch_miou(model: RefineNet, dataset: PatchDataset, *, batch_size: int = 64,
               device: str | torch.device = "cpu") -> dict[str, float]:
    """Patch-level IoU of the refined and of the coarse masks over ``dataset``, in percent:
    ``miou``, ``bg_iou``, ``fg_iou``, ``coarse_miou``."""
    was_training = model.training
    model.eval()
    refined = torch.zeros(2, 2, dtype=torch.float64)
    coarse_iou = torch.zeros(2, 2, dtype=torch.float64)
    for image, coarse, gt in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        image, coarse = image.to(device), coarse.to(device)
        pred = (model.predict(image, coarse) > 0.5).cpu().long()
        refined += _iou(pred, gt)
        coarse_iou += _iou(coarse.cpu().long(), gt)
    model.train(was_training)

    def percent(stats: torch.Tensor) -> list[float]:
        return (100.0 * stats[:, 0] / stats[:, 1].clamp(min=1)).tolist()

    bg, fg = percent(refined)
    return {"miou": (bg + fg) / 2, "bg_iou": bg, "fg_iou": fg, "coarse_miou": sum(percent(coarse_iou)) / 2}


def train_refiner(
    patch_dir: str | os.PathLike,
    run_dir: str | os.PathLike,
    *,
    val_patch_dir: str | os.PathLike | None = None,
    val_every_instance: int = 20,
    backbone: str = DEFAULT_BACKBONE,
    backbone_weights: str | os.PathLike | None = None,
    model_args: Mapping[str, Any] | None = None,
    input_size: int = DEFAULT_INPUT_SIZE,
    iters: int = 160_000,
    batch_size: int = 32,
    lr: float = 0.01,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    power: float = 0.9,
    eval_every: int = 4000,
    checkpoint_every: int = 4000,
    keep_checkpoints: int | None = 3,
    num_workers: int = 2,
    device: str | torch.device | None = None,
    amp: str = "off",
    seed: int = 0,
    resume: bool = False,
    progress: bool = True,
    tensorboard: bool = True,
    config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train a BPR network; files go to ``run_dir`` (checkpoints, ``metrics.json``, TensorBoard, config).

    Args:
        patch_dir: a folder of :func:`densevision.refine.dataset.build_patch_dataset`.
        val_patch_dir: validation patches; without it one instance in ``val_every_instance`` of ``patch_dir``
            is held out.
        backbone / backbone_weights / model_args / input_size: the network (see
            :func:`densevision.refine.network.build_refine_net`); the patch size comes from the patch folder.
        iters / batch_size / lr / momentum / weight_decay / power: SGD with poly decay, per BPR.
        eval_every / checkpoint_every / keep_checkpoints: validation and checkpoint periods.
        device: default CUDA when available. amp: ``"off"``, ``"bf16"`` or ``"fp16"``.
        resume: continue the run in ``run_dir`` from its ``last.pt``.
        config: extra values saved with the run (e.g. the command-line flags).

    Returns:
        The trainer's summary: ``iteration``, last ``losses``, last ``metrics``, ``best``.
    """
    if val_patch_dir is None:
        train_set = PatchDataset(patch_dir, split="train", val_every=val_every_instance, augment=True)
        val_set = PatchDataset(patch_dir, split="val", val_every=val_every_instance)
    else:
        train_set = PatchDataset(patch_dir, augment=True)
        val_set = PatchDataset(val_patch_dir)
    if len(train_set) == 0:
        raise DenseVisionError(f"{patch_dir}: no training patches")
    if val_set.patch_size != train_set.patch_size:
        raise DenseVisionError(f"{val_patch_dir}: patch size {val_set.patch_size} differs from the training "
                               f"patches' {train_set.patch_size}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model = build_refine_net(backbone, input_size=input_size, patch_size=train_set.patch_size,
                             backbone_weights=backbone_weights, **dict(model_args or {}))
    optimizer = build_optimizer(model, name="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = build_scheduler(optimizer, max_iters=iters, schedule="poly", power=power)
    data = IterationLoader(train_set, batch_size, seed=seed, num_workers=num_workers,
                           pin_memory=device.type == "cuda")

    def evaluator(module: nn.Module) -> dict[str, float]:
        if len(val_set) == 0:
            return {}
        return patch_miou(module, val_set, batch_size=max(batch_size, 64), device=device)

    saved = {**dict(config or {}), ARCH_KEY: model.arch, "patches": os.fspath(patch_dir)}
    trainer = Trainer(
        model, optimizer, data, scheduler=scheduler, run_dir=run_dir, max_iters=iters, device=device, amp=amp,
        checkpoint_every=checkpoint_every, keep_checkpoints=keep_checkpoints, eval_every=eval_every,
        evaluator=evaluator, best_metric=BEST_METRIC if len(val_set) else None, config=saved, seed=seed,
        loss_fn=refine_loss, progress=progress, tensorboard=tensorboard, resume=resume,
    )
    return trainer.train()
