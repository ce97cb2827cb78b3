"""Training a top-down pose network on COCO keypoint data: the pose task for :func:`densevision.engine.train_task`.

The recipe (:class:`~densevision.pose.config.PoseTrainConfig`) follows the official HRNet code: crops of the
ground-truth boxes with random rotation, scale and flip, Gaussian heatmap targets, the visibility-weighted MSE
(``0.5 × mean over joints``), Adam with step decay. Validation: OKS AP of the keypoints predicted from the
validation ground-truth boxes (flip test), evaluated by pycocotools with each category's sigmas.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densevision.data.jsonio import read_json
from densevision.data.keypoints import Augment, KeypointLayout, TopDownDataset, load_keypoint_instances
from densevision.data.results import write_results
from densevision.engine import is_main_process, train_task
from densevision.engine.checkpoint import find_checkpoint, init_from_checkpoint
from densevision.errors import DenseVisionError
from densevision.evaluation.coco import CocoEvaluator
from densevision.io import write_json
from densevision.models.pretrained import AUTO, NONE, backbone_weights
from densevision.pose.config import PoseNetConfig, PoseTrainConfig
from densevision.pose.model import TopDownPose, build_pose_model, pose_model_spec
from densevision.pose.predict import gt_box_instances, predict_keypoints

HEATMAP_STRIDE = 4
EVAL_DIR = "eval"
LOGGED_METRICS = ("AP", "AP50", "AP75", "AR")


def heatmap_loss(heatmaps: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """The official JointsMSELoss: ``0.5 × mean((w·(pred − target))²)`` over B×K×h×w (weights B×K)."""
    w = weight[:, :, None, None]
    return 0.5 * ((heatmaps.float() - target) * w).pow(2).mean()


def _data_paths(config: PoseTrainConfig) -> tuple[str, str, str | None, str | None]:
    data = config.data
    if data.data is not None:
        root = Path(data.data)
        val_json = root / "annotations" / "instances_val.json"
        return (str(root / "annotations" / "instances_train.json"), str(root / "train"),
                str(val_json) if val_json.is_file() else None, str(root / "val") if val_json.is_file() else None)
    if data.train_json is None or data.train_images is None:
        raise DenseVisionError("training data needed: --data DIR or --train-json J --train-images DIR")
    if (data.val_json is None) != (data.val_images is None):
        raise DenseVisionError("--val-json and --val-images go together")
    return data.train_json, data.train_images, data.val_json, data.val_images


class PoseTask:
    """Top-down pose training on COCO keypoint data (:class:`densevision.engine.Task`)."""

    best_metric = "keypoints/AP"
    collate_fn = None
    optimizer = "adamw"  # with the recipe's weight decay 0: Adam, as the official code

    def __init__(self, config: PoseTrainConfig) -> None:
        self.config = config
        self.layout: KeypointLayout | None = None
        self.val_paths: tuple[str, str] | None = None

    def build_train_data(self) -> TopDownDataset:
        train_json, train_images, val_json, val_images = _data_paths(self.config)
        instances, self.layout = load_keypoint_instances(train_json, train_images)
        if not instances:
            raise DenseVisionError(f"{train_json}: no instance with a labelled keypoint")
        if val_json is not None:
            gt_box_instances(val_json, val_images, self.layout)
            self.val_paths = (val_json, val_images)
        data, net = self.config.data, self.config.model
        augment = Augment(rotation=data.rotation, scale=data.scale, flip=data.flip, half_body=data.half_body)
        return TopDownDataset(instances, self.layout, input_size=net.input_size, heatmap_stride=HEATMAP_STRIDE,
                              sigma=net.sigma, augment=augment, unbiased=net.target == "unbiased")

    def build_model(self) -> TopDownPose:
        net = self.config.model
        given_backbone_file = net.backbone_weights not in (AUTO, NONE, None)
        if net.weights is not None and given_backbone_file:
            raise DenseVisionError("give --weights or --backbone-weights, not both")
        if net.init is not None and (net.weights is not None or net.backbone_init is not None or given_backbone_file):
            raise DenseVisionError("--init starts the whole network: give it without --weights, --backbone-weights "
                                   "or --backbone-init")
        # Without --weights, the backbone (a pose HRNet's body) starts from --backbone-weights; --backbone-init
        # replaces every backbone tensor, so auto fetches nothing for it.
        start = net.backbone_weights if net.weights is None and net.init is None else None
        if net.backbone_init is not None and start == AUTO:
            start = None
        weights = net.weights
        if net.backbone is not None and net.model is None and start is not None:
            weights = backbone_weights(net.backbone, start, overrides=net.overrides)
        model = build_pose_model(num_joints=self.layout.num_joints, input_size=net.input_size, model=net.model,
                                 backbone=net.backbone, head=net.head, overrides=net.overrides, weights=weights)
        if net.model is not None and start is not None:
            body = backbone_weights(model.network.pretrained_cfg["body_variant"], start, overrides=net.overrides)
            if body is not None:
                model.network.load_body_weights(body)
        if net.backbone_init is not None:
            if net.backbone is None:
                raise DenseVisionError("--backbone-init goes with --backbone (a zoo pose network loads --weights)")
            init_from_checkpoint(model.network.body, net.backbone_init, prefix=net.backbone_init_prefix)
        if net.init is not None:
            init_from_checkpoint(model, find_checkpoint(net.init), prefix="")
        if model.heatmap_stride != HEATMAP_STRIDE:
            raise DenseVisionError(f"the network's heatmaps have stride {model.heatmap_stride}; the pose task "
                                   f"trains stride-{HEATMAP_STRIDE} heatmaps")
        return model

    def loss(self, model: nn.Module, batch: Sequence[Any]) -> dict[str, torch.Tensor]:
        images, target, weight, _ = batch
        return {"loss_heatmap": heatmap_loss(model(images), target, weight)}

    def build_evaluator(self, run_dir: Path, device: torch.device) -> Any:
        if self.val_paths is None:
            return None
        val_json, val_images = self.val_paths
        instances = gt_box_instances(val_json, val_images, self.layout)
        coco = CocoEvaluator(read_json(val_json), "keypoints", kpt_sigmas=self.config.data.kpt_sigmas)
        batch_size, out_dir = self.config.train.eval_batch_size, run_dir / EVAL_DIR
        decoding = decoding_options(self.config.model)

        def evaluate(model: nn.Module) -> dict[str, float]:
            if not is_main_process():
                return {}
            results = predict_keypoints(model, instances, self.layout, batch_size=batch_size, device=device,
                                        **decoding)
            metrics = coco.evaluate(results)
            write_results(out_dir / "results.json", results)
            write_json(out_dir / "coco_metrics.json", metrics)
            return {f"keypoints/{n}": v for n, v in metrics["keypoints"].items() if n in LOGGED_METRICS
                    and v is not None}

        return evaluate

    def model_spec(self, model: TopDownPose) -> dict[str, Any]:
        net = self.config.model
        return pose_model_spec({"input_size": net.input_size, "model": net.model, "backbone": net.backbone,
                                "head": net.head, "overrides": net.overrides},
                               num_joints=self.layout.num_joints,
                               meta={"categories": self.layout.to_meta(), **decoding_options(net)})


def decoding_options(net: PoseNetConfig) -> dict[str, Any]:
    """How heatmaps of a network trained with ``net`` are decoded (``predict_keypoints`` keywords; kept in the
    checkpoint's model-spec meta for predict)."""
    return {"decode": net.decode, "unbiased": net.target == "unbiased"}


def train_pose(
    config: PoseTrainConfig, run_dir: str | os.PathLike, *, device: str = "auto", resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train a pose network with ``config`` into ``run_dir`` (checkpoints, ``metrics.json``, ``config.yaml``,
    ``eval/``); returns the summary of :func:`densevision.engine.train_task`."""
    return train_task(PoseTask(config), run_dir, device=device, resume=resume, progress=progress)
