"""Training Mask R-CNN on COCO-format data with the shared engine (:class:`densevision.engine.Trainer`).

:func:`train_detector` wires the data sets, the model (:func:`build_mask_rcnn`), SGD with warm-up and a
per-iteration schedule, and an evaluator that runs :func:`run_detector` on the validation images and scores
bbox / segm / boundary AP with :class:`densevision.evaluation.CocoEvaluator`. The run directory holds the
engine's files (``config.yaml``, ``last.pt``, ``best.pt``, ``metrics.json``, ``loss_curve.png``) and
``eval/results.json`` / ``eval/coco_metrics.json`` of the latest evaluation; every checkpoint carries the
``detector`` section :func:`load_detector` rebuilds the model from.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from densevision.data.coco import CocoDetection
from densevision.data.transforms import Compose, PhotometricJitter, RandomHorizontalFlip, detection_collate
from densevision.detection.mask_rcnn import build_mask_rcnn
from densevision.detection.predict import DetectorInfo, ImageDataset, ImageRecord, run_detector
from densevision.detection.results import write_results
from densevision.engine import (
    IterationLoader,
    Trainer,
    build_optimizer,
    build_scheduler,
    gather_results,
    init_distributed,
    is_main_process,
    seed_everything,
    shard_indices,
)
from densevision.errors import DataError, DenseVisionError
from densevision.evaluation import IOU_TYPES, CocoEvaluator
from densevision.io import write_json

AMP_CHOICES = ("off", "auto", "bf16", "fp16")
EVAL_DIR = "eval"
LOGGED_METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def data_layout(data_dir: str | os.PathLike) -> dict[str, Path | None]:
    """Paths of a data folder laid out like the synthetic set: ``annotations/instances_{train,val}.json``,
    ``train/``, ``val/`` (the val entries are None when ``instances_val.json`` is absent)."""
    root = Path(data_dir)
    train_json = root / "annotations" / "instances_train.json"
    if not train_json.is_file():
        raise DataError(f"{root}: expected annotations/instances_train.json (a folder like `densevision data synth`)")
    val_json = root / "annotations" / "instances_val.json"
    has_val = val_json.is_file()
    return {
        "train_json": train_json,
        "train_images": root / "train",
        "val_json": val_json if has_val else None,
        "val_images": root / "val" if has_val else None,
    }


def drop_degenerate(image: torch.Tensor, target: dict[str, torch.Tensor]) -> tuple[torch.Tensor, dict]:
    """Remove instances whose box has no width or height (torchvision refuses them in training)."""
    boxes = target["boxes"]
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if bool(keep.all()):
        return image, target
    return image, {k: (v[keep] if v.ndim and len(v) == len(keep) else v) for k, v in target.items()}


def image_sizes_from_data(dataset: CocoDetection) -> tuple[int, int]:
    """``(min_size, max_size)`` that keep the training images at their median size."""
    imgs = dataset.coco.imgs.values()
    short = statistics.median(min(i["height"], i["width"]) for i in imgs)
    long = statistics.median(max(i["height"], i["width"]) for i in imgs)
    return int(short + 0.5), int(max(long, short) + 0.5)


def _categories(dataset: CocoDetection) -> list[dict[str, Any]]:
    return [{"id": dataset.label_to_cat[i + 1], "name": name} for i, name in enumerate(dataset.class_names)]


def _check_annotated(dataset: CocoDetection, role: str) -> None:
    if not dataset.coco.anns:
        raise DataError(f"{dataset.ann_file}: the {role} set has no annotations; Mask R-CNN needs instances")


def val_records(dataset: CocoDetection) -> list[ImageRecord]:
    """The validation images as :class:`ImageRecord`s (ids, files and declared sizes of its json)."""
    records = []
    for image_id in dataset.image_ids:
        info = dataset.coco.imgs[image_id]
        records.append(ImageRecord(image_id, dataset.image_path(image_id), info["file_name"], info["height"],
                                   info["width"]))
    return records


class DetectionEvaluator:
    """``evaluator(model) -> {"segm/AP": ..., ...}`` for the trainer: every rank predicts its shard of the
    validation images, rank 0 scores the gathered results and writes them to ``out_dir``."""

    def __init__(
        self,
        dataset: CocoDetection,
        label_to_cat: Mapping[int, int],
        *,
        out_dir: str | os.PathLike,
        batch_size: int = 2,
        iou_types: Sequence[str] = IOU_TYPES,
    ) -> None:
        self.images = ImageDataset(val_records(dataset))
        self.label_to_cat = dict(label_to_cat)
        self.out_dir = Path(out_dir)
        self.batch_size = batch_size
        self.coco_evaluator = CocoEvaluator(dataset.coco, iou_types)

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        mine = run_detector(model, self.images, self.label_to_cat, batch_size=self.batch_size,
                            indices=shard_indices(len(self.images)))
        if not is_main_process():
            gather_results(mine)
            return {}
        position = {rec.image_id: i for i, rec in enumerate(self.images.records)}
        results = sorted(gather_results(mine), key=lambda r: position[r["image_id"]])  # as one process orders them
        metrics = self.coco_evaluator.evaluate(results)
        write_results(self.out_dir / "results.json", results)
        write_json(self.out_dir / "coco_metrics.json", metrics)
        return {f"{t}/{name}": v for t, values in metrics.items() for name, v in values.items()
                if name in LOGGED_METRICS and v is not None}


def train_detector(
    *,
    train_json: str | os.PathLike,
    train_images: str | os.PathLike,
    out_dir: str | os.PathLike,
    val_json: str | os.PathLike | None = None,
    val_images: str | os.PathLike | None = None,
    backbone: str = "hrnet_w18_small",
    iters: int = 1000,
    batch_size: int = 4,
    lr: float = 0.02,
    momentum: float = 0.9,
    weight_decay: float = 1e-4,
    warmup_iters: int = 100,
    schedule: str = "cosine",
    grad_clip: float | None = None,
    device: str = "auto",
    amp: str = "off",
    eval_every: int = 0,
    eval_batch_size: int = 2,
    checkpoint_every: int = 500,
    log_every: int = 20,
    seed: int = 0,
    resume: bool = False,
    min_size: int | Sequence[int] | None = None,
    max_size: int | None = None,
    hflip: float = 0.5,
    photometric: bool = True,
    model_kwargs: Mapping[str, Any] | None = None,
    num_workers: int = 0,
    iou_types: Sequence[str] = IOU_TYPES,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a Mask R-CNN and return ``{"iteration", "losses", "metrics", "best", "run_dir", "checkpoint"}``.

    Args:
        train_json, train_images / val_json, val_images: COCO files and their image folders (no val: no
            evaluation, ``best.pt`` is not written).
        out_dir: the run directory (must be new unless ``resume``).
        backbone: zoo name or ``"timm:<name>"``; ``model_kwargs`` are further :func:`build_mask_rcnn` arguments
            (``heads``, ``backbone_kwargs``, ``backbone_weights``, ``freeze_at``, ...).
        iters, batch_size (per process), lr, momentum, weight_decay, warmup_iters, schedule, grad_clip: SGD.
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``; under torchrun each rank its GPU.
        amp: ``"off"``, ``"bf16"``, ``"fp16"`` (CUDA) or ``"auto"`` (fp16 on CUDA, bf16 on the CPU).
        eval_every: evaluate every N iterations (0: only at the end); ``eval_batch_size`` images at a time.
        log_every: iterations averaged into one logged loss value (1: every iteration).
        min_size, max_size: image resizing inside the model; default: the training images' median size.
        hflip, photometric: augmentation (flip probability, colour jitter on/off).
        resume: continue ``out_dir/last.pt`` (a fresh run when there is none).
    """
    if amp not in AMP_CHOICES:
        raise DenseVisionError(f"unknown AMP mode {amp!r}; choose one of {', '.join(AMP_CHOICES)}")
    dist = init_distributed(device)
    if amp == "auto":
        amp = "fp16" if dist.device.type == "cuda" else "bf16"
    augment = [RandomHorizontalFlip(hflip)] + ([PhotometricJitter()] if photometric else []) + [drop_degenerate]
    train_set = CocoDetection(train_json, train_images, transforms=Compose(augment), include_crowd=False)
    _check_annotated(train_set, "training")
    val_set = None
    if val_json is not None:
        if val_images is None:
            raise DenseVisionError("val_json given without val_images")
        val_set = CocoDetection(val_json, val_images)
        _check_annotated(val_set, "validation")
        if _categories(val_set) != _categories(train_set):
            raise DataError(f"{val_json}: categories differ from those of {train_json}")
    if min_size is None:
        min_size, data_max = image_sizes_from_data(train_set)
        max_size = data_max if max_size is None else max_size

    seed_everything(seed)
    kwargs = dict(model_kwargs or {})
    model = build_mask_rcnn(backbone, len(train_set.class_names), min_size=min_size, max_size=max_size, **kwargs)
    info = DetectorInfo(model=model.config, categories=_categories(train_set))
    settings = {
        "train_json": train_json, "train_images": train_images, "val_json": val_json, "val_images": val_images,
        "backbone": backbone, "iters": iters, "batch_size": batch_size, "lr": lr, "momentum": momentum,
        "weight_decay": weight_decay, "warmup_iters": warmup_iters, "schedule": schedule, "grad_clip": grad_clip,
        "amp": amp, "eval_every": eval_every, "eval_batch_size": eval_batch_size, "seed": seed,
        "checkpoint_every": checkpoint_every, "hflip": hflip, "photometric": photometric,
        "world_size": dist.world_size, "model_kwargs": {k: v for k, v in kwargs.items() if k != "backbone_weights"},
        "backbone_weights": kwargs.get("backbone_weights"),
    }
    optimizer = build_optimizer(model, name="sgd", lr=lr, momentum=momentum, weight_decay=weight_decay)
    scheduler = build_scheduler(optimizer, max_iters=iters, schedule=schedule, warmup_iters=warmup_iters)
    loader = IterationLoader(train_set, batch_size, seed=seed, collate_fn=detection_collate, num_workers=num_workers)
    evaluator = None
    if val_set is not None:
        evaluator = DetectionEvaluator(val_set, train_set.label_to_cat, out_dir=Path(out_dir) / EVAL_DIR,
                                       batch_size=eval_batch_size, iou_types=iou_types)
    trainer = Trainer(
        model, optimizer, loader,
        scheduler=scheduler,
        run_dir=out_dir,
        max_iters=iters,
        device=dist.device,
        amp=amp,
        grad_clip=grad_clip,
        checkpoint_every=checkpoint_every,
        log_every=log_every,
        eval_every=eval_every,
        evaluator=evaluator,
        best_metric="segm/AP" if evaluator is not None and "segm" in iou_types else None,
        config={"train": settings, "detector": info.as_config()},
        seed=seed,
        loss_fn=lambda m, batch: m(*batch),
        progress=progress,
        resume=resume,
    )
    summary = trainer.train()
    return {**summary, "run_dir": Path(out_dir), "checkpoint": trainer.checkpointer.last_path}
