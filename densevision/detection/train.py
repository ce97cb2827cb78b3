"""Training Mask R-CNN (or the cascade, or Keypoint R-CNN) on COCO-format data: the detection task for
:func:`densevision.engine.train_task`.

:class:`DetectionTask` provides the data sets (augmented training set, validation set), the model
(:func:`build_mask_rcnn` from the recipe's :class:`~densevision.detection.config.MaskRCNNConfig`), the loss
and a :class:`DetectionEvaluator` that scores bbox / segm / boundary AP (Keypoint R-CNN: bbox and keypoint OKS
AP, plus segm / boundary with its masks) with :class:`densevision.evaluation.CocoEvaluator` and writes
``eval/results.json`` / ``eval/coco_metrics.json``. Every checkpoint carries the ``mask_rcnn`` model spec
(builder config, categories and, for Keypoint R-CNN, the keypoint layout) that
:func:`~densevision.detection.predict.load_detector` rebuilds the model from.
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from densevision.data.coco import CocoDetection
from densevision.data.results import write_results
from densevision.data.transforms import Compose, PhotometricJitter, RandomHorizontalFlip, detection_collate
from densevision.detection.config import DetectorTrainConfig
from densevision.detection.keypoint_rcnn import KeypointCocoDetection, keypoint_channels
from densevision.detection.mask_rcnn import build_mask_rcnn
from densevision.detection.predict import ImageDataset, ImageRecord
from densevision.detection.results import detections_to_coco
from densevision.engine import gather_results, inference_on_dataset, is_main_process, shard_indices, train_task
from densevision.engine.checkpoint import model_spec
from densevision.errors import DataError, DenseVisionError
from densevision.evaluation import IOU_TYPES, CocoEvaluator
from densevision.io import write_json

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


def _keypoint_names(dataset: KeypointCocoDetection) -> dict[int, tuple[str, ...]]:
    return {cat_id: cat.keypoints for cat_id, cat in dataset.layout.categories.items()}


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


def _image_batch(batch: Sequence[tuple[int, torch.Tensor]]) -> tuple[list[int], list[torch.Tensor]]:
    ids, images = zip(*batch, strict=True)
    return list(ids), list(images)


def _detect(model: nn.Module, batch: tuple[list[int], list[torch.Tensor]]) -> list[dict[str, torch.Tensor]]:
    device = next(model.parameters()).device
    return [{k: v.cpu() for k, v in out.items()} for out in model([im.to(device) for im in batch[1]])]


class DetectionEvaluator:
    """COCO bbox / segm / boundary AP of detections (:class:`~densevision.engine.DatasetEvaluator`): every
    rank processes its shard, rank 0 scores the gathered results, writes them to ``out_dir`` and returns
    ``{"segm/AP": ..., ...}``. With ``keypoint_channels`` (Keypoint R-CNN's stacked layout, see
    :func:`~densevision.detection.results.detections_to_coco`) results carry keypoints, and the results with
    keypoints are also scored with OKS AP (``"keypoints/AP"``, ...)."""

    def __init__(self, dataset: CocoDetection, label_to_cat: dict[int, int], *, out_dir: str | os.PathLike,
                 iou_types: Sequence[str] = IOU_TYPES, keypoint_channels: dict[int, slice] | None = None) -> None:
        self.label_to_cat = dict(label_to_cat)
        self.out_dir = Path(out_dir)
        self.order = {image_id: i for i, image_id in enumerate(dataset.image_ids)}
        self.coco_evaluator = CocoEvaluator(dataset.coco, iou_types)
        self.keypoint_channels = keypoint_channels
        self.keypoint_evaluator = None if keypoint_channels is None else CocoEvaluator(dataset.coco, "keypoints")
        self.results: list[dict[str, Any]] = []

    def reset(self) -> None:
        self.results = []

    def process(self, inputs: tuple[list[int], list[torch.Tensor]], outputs: list[dict[str, torch.Tensor]]) -> None:
        self.results.extend(detections_to_coco(outputs, inputs[0], self.label_to_cat,
                                               keypoint_channels=self.keypoint_channels))

    def evaluate(self) -> dict[str, float]:
        gathered = gather_results(self.results)
        if not is_main_process():
            return {}
        results = sorted(gathered, key=lambda r: self.order[r["image_id"]])  # as one process orders them
        metrics = self.coco_evaluator.evaluate(results)
        if self.keypoint_evaluator is not None:
            metrics.update(self.keypoint_evaluator.evaluate([r for r in results if "keypoints" in r]))
        write_results(self.out_dir / "results.json", results)
        write_json(self.out_dir / "coco_metrics.json", metrics)
        return {f"{t}/{name}": v for t, values in metrics.items() for name, v in values.items()
                if name in LOGGED_METRICS and v is not None}


class DetectionTask:
    """Mask R-CNN training on COCO-format data (:class:`densevision.engine.Task`); Keypoint R-CNN reads the
    keypoints too (:class:`~densevision.detection.keypoint_rcnn.KeypointCocoDetection`), flips them with their
    left/right pairs and selects ``best.pt`` by keypoint AP."""

    collate_fn = staticmethod(detection_collate)

    def __init__(self, config: DetectorTrainConfig) -> None:
        self.config = config
        self.keypoints = config.model.detector == "keypoint_rcnn"
        self.best_metric = "keypoints/AP" if self.keypoints else "segm/AP"
        self.train_set: CocoDetection | None = None
        self.val_set: CocoDetection | None = None

    def data_paths(self) -> dict[str, Any]:
        """Training and validation files from ``data.data`` or the explicit paths."""
        data = self.config.data
        if data.data and data.train_json:
            raise DenseVisionError("give either --data or --train-json/--train-images, not both")
        if data.data:
            return data_layout(data.data)
        if not (data.train_json and data.train_images):
            raise DenseVisionError("training data needed: --data DIR, or --train-json and --train-images")
        if bool(data.val_json) != bool(data.val_images):
            raise DenseVisionError("--val-json and --val-images go together")
        return {"train_json": data.train_json, "train_images": data.train_images, "val_json": data.val_json,
                "val_images": data.val_images}

    def build_train_data(self) -> CocoDetection:
        paths, data = self.data_paths(), self.config.data
        dataset = KeypointCocoDetection if self.keypoints else CocoDetection
        train_set = dataset(paths["train_json"], paths["train_images"], include_crowd=False)
        flip = RandomHorizontalFlip(data.hflip, train_set.layout.flip_index if self.keypoints else None)
        train_set.transforms = Compose([flip, *([PhotometricJitter()] if data.photometric else []), drop_degenerate])
        _check_annotated(train_set, "training")
        if paths["val_json"] is not None:
            val_set = dataset(paths["val_json"], paths["val_images"])
            _check_annotated(val_set, "validation")
            if _categories(val_set) != _categories(train_set):
                raise DataError(f"{paths['val_json']}: categories differ from those of {paths['train_json']}")
            if self.keypoints and _keypoint_names(val_set) != _keypoint_names(train_set):
                raise DataError(f"{paths['val_json']}: keypoints differ from those of {paths['train_json']}")
            self.val_set = val_set
        self.train_set = train_set
        return train_set

    def build_model(self) -> nn.Module:
        model = self.config.model
        if model.min_size is None:
            min_size, data_max = image_sizes_from_data(self.train_set)
            model = replace(model, min_size=min_size, max_size=data_max if model.max_size is None else model.max_size)
        num_keypoints = self.train_set.layout.num_joints if self.keypoints else None
        return build_mask_rcnn(model, len(self.train_set.class_names), num_keypoints=num_keypoints)

    def loss(self, model: nn.Module, batch: Any) -> dict[str, torch.Tensor]:
        return model(*batch)

    def build_evaluator(self, run_dir: Path, device: torch.device) -> Any:
        if self.val_set is None:
            return None
        images = ImageDataset(val_records(self.val_set))
        loader = DataLoader(Subset(images, list(shard_indices(len(images)))),
                            batch_size=self.config.train.eval_batch_size, collate_fn=_image_batch)
        if self.keypoints:
            masks = self.config.model.keypoint_masks
            evaluator = DetectionEvaluator(self.val_set, self.train_set.label_to_cat, out_dir=run_dir / EVAL_DIR,
                                           iou_types=IOU_TYPES if masks else ("bbox",),
                                           keypoint_channels=keypoint_channels(self.train_set.layout))
        else:
            evaluator = DetectionEvaluator(self.val_set, self.train_set.label_to_cat, out_dir=run_dir / EVAL_DIR)
        return lambda model: inference_on_dataset(model, loader, evaluator, forward=_detect)

    def model_spec(self, model: nn.Module) -> dict[str, Any]:
        meta: dict[str, Any] = {"categories": _categories(self.train_set)}
        if self.keypoints:
            meta["keypoints"] = self.train_set.layout.to_meta()
        return model_spec("mask_rcnn", model.config, meta)


def train_detector(
    config: DetectorTrainConfig, out_dir: str | os.PathLike, *, device: str = "auto", resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a Mask R-CNN (Cascade, Keypoint R-CNN: ``config.model.detector``) with ``config`` into ``out_dir``;
    returns ``{"iteration", "losses", "metrics", "best", "run_dir", "checkpoint"}`` (see
    :func:`densevision.engine.train_task`)."""
    return train_task(DetectionTask(config), out_dir, device=device, resume=resume, progress=progress)
