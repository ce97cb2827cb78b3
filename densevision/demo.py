"""The end-to-end demo on the embedded synthetic data: detector -> boundary refinement -> metrics and report,
plus a semantic segmenter scored against the detector's masks rendered to label maps.

``run_demo`` (``make demo``) uses the weights shipped in ``densevision/assets`` (small fp16 state dicts with model
cards); ``train_demo_weights`` reproduces them from scratch with the recorded :class:`DemoRecipe` and
:class:`SegDemoRecipe` (``demo --train``), or for a few iterations (``demo --quick``, what the tests run).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from densevision import __version__
from densevision.data.jsonio import read_json
from densevision.data.keypoints import KeypointLayout
from densevision.data.labelmaps import read_label_map, results_to_label_map
from densevision.data.synthetic import generate_split
from densevision.detection.config import DetectionDataConfig, DetectorTrainConfig, MaskRCNNConfig
from densevision.detection.predict import load_detector, predict
from densevision.detection.train import train_detector
from densevision.engine.checkpoint import BEST, MODEL_SPEC, Checkpointer, find_checkpoint
from densevision.engine.config import TrainConfig, from_dict, plain_value, to_dict
from densevision.engine.device import resolve_device
from densevision.errors import DenseVisionError
from densevision.evaluation import evaluate, format_table
from densevision.evaluation.semantic import SemanticEvaluator
from densevision.evaluation.semantic import format_table as semantic_table
from densevision.extras import require
from densevision.io import atomic_open, save_torch, write_json
from densevision.pose.config import PoseDataConfig, PoseNetConfig, PoseTrainConfig
from densevision.pose.model import load_pose_model
from densevision.pose.nms import oks_nms_results
from densevision.pose.predict import gt_box_instances, predict_keypoints, result_box_instances
from densevision.pose.train import train_pose
from densevision.refine.config import RefineRuleConfig, RefineTrainConfig
from densevision.refine.dataset import INDEX_FILE as PATCH_INDEX
from densevision.refine.dataset import build_patch_dataset
from densevision.refine.network import load_refine_net
from densevision.refine.pipeline import refine_results
from densevision.refine.train import train_refiner
from densevision.report import gain_table, write_demo_figures, write_semantic_figure
from densevision.segmentation.config import SegDataConfig, SegmenterConfig, SegTrainConfig
from densevision.segmentation.model import load_segmenter
from densevision.segmentation.predict import predict_folder
from densevision.segmentation.train import train_segmenter

ASSETS = Path(__file__).parent / "assets"
DETECTOR_FILE = "demo_detector.pt"
REFINER_FILE = "demo_refiner.pt"
SEGMENTER_FILE = "demo_segmenter.pt"
POSE_FILE = "demo_pose.pt"
BASELINE_SCORE = 0.5  # detections drawn into the semantic baseline's label maps score at least this
OKS_NMS = 0.9  # pose predict's default: the official test's OKS-NMS threshold
BOUNDARY_RATIO = 0.02  # semantic Boundary IoU band: 2 % of the image diagonal
IOU_TYPES = ("bbox", "segm", "boundary")
FIRST_LOSSES = 5
RULE_CHOICE = ("benchmarks/bpr_refine_rule.py --images 100: the rule with the highest segm AP + Boundary AP among "
               "those lowering none of bbox AP, segm AP, AP50, APs and Boundary AP, on a tuning split (synthetic "
               "seed 1, 100 images, the shipped detector at 224²) disjoint from the validation split")


@dataclass(frozen=True)
class DemoRecipe:
    """Everything that decides the demo weights; saved in each model card."""

    seed: int = 0
    image_size: int = 512
    train_images: int = 1000
    val_images: int = 40
    detector_backbone: str = "hrnet_w18_small_v2"
    detector_input: int = 160
    detector_iters: int = 4500
    detector_batch: int = 4
    detector_lr: float = 0.01
    detector_warmup: int = 250
    detector_grad_clip: float | None = 10.0
    detector_eval_every: int = 500
    # Objects span 8-96 px at the 160² input: anchors of 4 × stride (16-256 px) instead of the default 8 ×.
    detector_model_kwargs: dict[str, Any] = field(default_factory=lambda: {"anchor_scale": 4.0})
    # Detector input in `make demo` (None: the training size; the refiner's training patches come from predictions
    # at the training size). 224 gave the best refined masks on a held-out tuning split (seed 1, 100 images;
    # benchmarks/demo_test_size.py).
    detector_test_input: int | None = 224
    refiner_backbone: str = "hrnet_w18_small_v2"
    refiner_input: int = 64
    refiner_iters: int = 3000
    refiner_batch: int = 16
    refiner_lr: float = 0.01
    refiner_eval_every: int = 1000
    refiner_overrides: dict[str, Any] = field(default_factory=dict)
    nms_iou: float = 0.25
    match_iou: float = 0.5


QUICK_RECIPE = replace(
    DemoRecipe(), image_size=160, train_images=4, val_images=2, detector_input=128, detector_iters=3,
    detector_batch=2, detector_warmup=1, detector_eval_every=0, refiner_iters=3, refiner_batch=4,
    refiner_eval_every=0, match_iou=0.0, detector_test_input=None,
    detector_model_kwargs={"backbone_kwargs": {"width": 8, "stage1_planes": 16}, "fpn_channels": 32,
                           "mask_head_channels": 32, "box_head_dim": 64, "box_detections_per_img": 20},
    refiner_overrides={"width": 8, "stage1_planes": 16, "num_modules": (1, 1, 1)},
)


@dataclass(frozen=True)
class SegDemoRecipe:
    """Everything that decides the demo segmenter; saved in its model card.

    Semantic FPN over the demo detector's backbone, started from the detector's trained backbone weights, on
    random ``crop``² crops of the demo's training split (its 512² images rescaled to ``scale``², the scale of
    objects the detector's backbone was trained at, times a random ``ratio_range`` factor). Its learning curve and
    best checkpoint come from a tuning split (synthetic seed ``tune_seed``, disjoint from the validation split,
    run at ``val_input``); nothing is chosen on the validation split.
    """

    head: str = "fpn"
    channels: int = 64
    fpn_channels: int = 64
    crop: int = 256
    scale: int = 256
    ratio_range: tuple[float, float] = (0.5, 1.5)
    iters: int = 2500
    batch: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup: int = 50
    eval_every: int = 250
    tune_seed: int = 1
    tune_images: int = 12
    # Input size (longer side; None: the images' own 512²) of the tuning-split evaluations during training: the
    # training scale.
    val_input: int | None = 256
    # Input size of the segmenter in `make demo` and in the card's validation metrics. 384 gave the best mIoU on
    # the tuning split (seed 1, 20 images; 256: 81.11, 320: 86.93, 384: 87.85, 512: 83.31;
    # benchmarks/demo_seg_test_size.py).
    test_input: int | None = 384


QUICK_SEG_RECIPE = replace(SegDemoRecipe(), channels=16, fpn_channels=16, crop=64, scale=128, iters=3, batch=2,
                           warmup=1, eval_every=0, tune_images=2, val_input=None, test_input=None)


@dataclass(frozen=True)
class PoseDemoRecipe:
    """Everything that decides the demo pose network; saved in its model card.

    Top-down keypoints of the demo's shapes (triangle vertices, square corners, star tips; OKS sigma 0.025): an
    HRNetV2 heatmap head over the demo detector's backbone, started from the detector's backbone weights, on
    ``input``² crops of the training split's ground-truth boxes, unbiased Gaussian targets decoded by DARK: on
    the tuning split (seed ``tune_seed``) the targets themselves decode to 95.2 keypoint AP at 192² that way, to
    87.7 with the official rounded targets and quarter-pixel rule (96.2 and 71.7 at 128²;
    ``benchmarks/pose_target_ceiling.py``: the ceiling a network could reach). 192² crops: tuning keypoint AP
    75.71 (best checkpoint of 4000 iterations), 69.21 at 128² (the visible keypoints' localisation limited the
    128² network). Its learning curve and best checkpoint come from the same tuning split; nothing is chosen on
    the validation split.
    """

    head: str = "hrnetv2"
    input: int = 192
    # No rotation augmentation: the shapes' keypoints are named clockwise from 12 o'clock on screen, so rotating a
    # crop would hand a keypoint its neighbour's name (the default ±45° relabels about one crop in four).
    rotation: float = 0.0
    iters: int = 4000
    batch: int = 32
    lr: float = 1e-3
    eval_every: int = 200
    tune_seed: int = 1
    tune_images: int = 20
    target: str = "unbiased"
    decode: str = "dark"
    # Detector boxes the keypoint stage of `make demo` takes: those scoring at least this (inference only). Chosen
    # on the tuning split (seed 1, 40 images): keypoint AP 43.55 at 0.05 (every box the detector keeps), 41.59 at
    # 0.2, 36.99 at 0.5, 30.57 at 0.7 (`python benchmarks/demo_pose_box_score.py`).
    box_score: float = 0.05


QUICK_POSE_RECIPE = replace(PoseDemoRecipe(), input=64, iters=3, batch=4, eval_every=0, tune_images=2)


def prepare_split(data_dir: Path, split: str, count: int, recipe: DemoRecipe, *, labels: bool = False,
                  progress: bool = True) -> tuple[Path, Path]:
    """The synthetic split's (annotation json, image folder), generated unless an identical one is there;
    with ``labels`` also its semantic label maps (``data_dir/labels/split``)."""
    ann = data_dir / "annotations" / f"instances_{split}.json"
    if ann.is_file():
        data = read_json(ann)
        info = data.get("info", {})
        same = (info.get("seed"), info.get("size"), len(data.get("images", []))) == (recipe.seed, recipe.image_size,
                                                                                  count)
        same = same and all("keypoints" in c for c in data.get("categories", []))
        have_labels = not labels or len(list((data_dir / "labels" / split).glob("*.png"))) == count
        if same and have_labels:
            return ann, data_dir / split
    ann = generate_split(data_dir, split, count, size=recipe.image_size, seed=recipe.seed, labels=labels,
                         progress=progress)
    return ann, data_dir / split


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch": torch.__version__, "densevision": __version__,
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def _half_weights(checkpoint: Path, out: Path, keep_config: bool = True) -> Path:
    """Write the ``model`` weights of a training checkpoint as fp16 (plus its model spec and config) for
    shipping."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = {k: v.half() if v.is_floating_point() else v for k, v in state["model"].items()}
    save_torch(out, {"model": model, MODEL_SPEC: state[MODEL_SPEC],
                     "config": state.get("config", {}) if keep_config else {}})
    return out


def _ship_run(run_dir: Path, weights: Path, start: float) -> tuple[Path, Path, float]:
    """The run's chosen checkpoint, its fp16 copy at ``weights`` and the seconds since ``start``."""
    checkpoint = find_checkpoint(run_dir)
    return checkpoint, _half_weights(checkpoint, weights), time.perf_counter() - start


def _backbone_init_card(detector: str | os.PathLike) -> dict[str, str]:
    """The card's ``backbone_init``: the detector checkpoint a backbone started from."""
    return {"file": Path(detector).name, "sha256": _sha256(Path(detector)), "prefix": "backbone.body."}


def _run_history(run_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """The engine's ``metrics.json``: ``{"train": [loss entries], "eval": [metric entries]}``."""
    path = run_dir / "metrics.json"
    return read_json(path) if path.is_file() else {"train": [], "eval": []}


def _checkpoint_metrics(summary: Mapping[str, Any], checkpoint: Path, history: Mapping[str, list[dict[str, Any]]],
                        keep: Callable[[str], bool] = lambda name: True) -> dict[str, float]:
    """The evaluation metrics (names for which ``keep(name)`` holds) of the checkpoint that ships: the best
    evaluation's when it is ``best.pt``, else the last evaluation's (``summary`` is what training returned)."""
    metrics = summary.get("metrics", {})
    best = summary.get("best")
    if checkpoint.name == BEST and best is not None:
        metrics = next(e for e in history.get("eval", []) if e["iteration"] == best["iteration"])
    return {k: v for k, v in metrics.items() if k != "iteration" and keep(k)}


def _train_seconds(history: list[dict[str, Any]]) -> float:
    """Seconds spent in training steps, from the logged per-window mean step times (evaluation excluded)."""
    total, previous = 0.0, 0
    for entry in history:
        total += entry.get("time", 0.0) * (entry["iteration"] - previous)
        previous = entry["iteration"]
    return total


def refine_rule_card() -> dict[str, Any]:
    """The refiner card's ``refine_rule``: the defaults ``bpr refine`` applies and how they were chosen."""
    return {**to_dict(RefineRuleConfig()), "chosen_by": RULE_CHOICE}


def _write_card(path: Path, *, weights: Path, command: str, recipe: DemoRecipe, iterations: int,
                wall_time_s: float, metrics: dict[str, Any], history: dict[str, list[dict[str, Any]]],
                extra: Mapping[str, Any] | None = None) -> None:
    """The model card: how the weights were made (command, seed, recipe, machine, time) and what they score;
    ``first_losses`` lets a rerun of the command be checked against the recorded one. ``wall_time_s`` is the
    last process's (a resumed run counts only its own part); ``train_time_s`` sums every step of the run.
    ``extra`` adds sections (the refiner's ``refine_rule``)."""
    write_json(path, {
        "weights": weights.name, "sha256": _sha256(weights), "dtype": "float16", "command": command,
        "seed": recipe.seed, "iterations": iterations, "wall_time_s": round(wall_time_s, 1),
        "train_time_s": round(_train_seconds(history.get("train", [])), 1),
        "machine": _machine(), "recipe": asdict(recipe), "metrics": metrics,
        "learning_curve": history.get("eval", []), "first_losses": history.get("train", [])[:FIRST_LOSSES],
        **(extra or {}),
    })


def detector_config(recipe: DemoRecipe, data: Mapping[str, Any]) -> DetectorTrainConfig:
    """The detector's training config that ``recipe`` decides, on ``data`` (``train_json``, ``train_images``,
    ``val_json``, ``val_images``); every other value is the detector recipe's default."""
    # Trained from scratch: no ImageNet weights (null, as in the runs the shipped weights come from).
    model = {"backbone": recipe.detector_backbone, "backbone_weights": None, "min_size": recipe.detector_input,
             "max_size": recipe.detector_input, **recipe.detector_model_kwargs}
    train = replace(DetectorTrainConfig().train, iters=recipe.detector_iters, batch_size=recipe.detector_batch,
                    lr=recipe.detector_lr, warmup_iters=recipe.detector_warmup, grad_clip=recipe.detector_grad_clip,
                    eval_every=recipe.detector_eval_every, checkpoint_every=max(recipe.detector_eval_every, 100),
                    log_every=1, seed=recipe.seed)
    data_config = DetectionDataConfig(**{k: None if v is None else os.fspath(v) for k, v in data.items()})
    return DetectorTrainConfig(data=data_config, model=from_dict(MaskRCNNConfig, model, "DemoRecipe"), train=train)


def refiner_config(recipe: DemoRecipe, patches: str | os.PathLike) -> RefineTrainConfig:
    """The refiner's training config that ``recipe`` decides, on the patch folder ``patches``."""
    config = RefineTrainConfig()
    model = replace(config.model, backbone=recipe.refiner_backbone, input_size=recipe.refiner_input,
                    overrides=plain_value(recipe.refiner_overrides))
    train = replace(config.train, iters=recipe.refiner_iters, batch_size=recipe.refiner_batch, lr=recipe.refiner_lr,
                    eval_every=recipe.refiner_eval_every, checkpoint_every=max(recipe.refiner_eval_every, 100),
                    workers=0, seed=recipe.seed)
    return replace(config, data=replace(config.data, patches=os.fspath(patches)), model=model, train=train)


def segmenter_config(recipe: DemoRecipe, seg: SegDemoRecipe, data: Mapping[str, Any],
                     detector: str | os.PathLike) -> SegTrainConfig:
    """The segmenter's training config that ``recipe`` / ``seg`` decide, on ``data`` (``train_images``,
    ``train_labels``, ``val_images``, ``val_labels``, ``classes``), its backbone (the detector's architecture)
    initialised from the detector checkpoint ``detector``."""
    backbone_kwargs = plain_value(recipe.detector_model_kwargs.get("backbone_kwargs", {}))
    model = SegmenterConfig(backbone=recipe.detector_backbone, head=seg.head, channels=seg.channels,
                            fpn_channels=seg.fpn_channels, aux=False, backbone_weights=None,
                            backbone_init=os.fspath(detector), backbone_kwargs=backbone_kwargs)
    data_config = SegDataConfig(**{k: os.fspath(v) for k, v in data.items()}, crop=[seg.crop, seg.crop],
                                scale=[seg.scale, seg.scale], ratio_range=list(seg.ratio_range),
                                val_size=seg.val_input)
    train = replace(TrainConfig(), iters=seg.iters, batch_size=seg.batch, lr=seg.lr, weight_decay=seg.weight_decay,
                    schedule="poly", power=1.0, warmup_iters=seg.warmup, eval_every=seg.eval_every,
                    eval_batch_size=1, checkpoint_every=max(seg.eval_every, 100), keep_checkpoints=2, log_every=10,
                    workers=0, seed=recipe.seed)
    return SegTrainConfig(data=data_config, model=model, train=train)


def train_demo_segmenter(out_dir: str | os.PathLike, detector: str | os.PathLike, *,
                         recipe: DemoRecipe = DemoRecipe(), seg: SegDemoRecipe = SegDemoRecipe(),
                         device: str = "auto", command: str = "densevision demo --train",
                         progress: bool = True) -> Path:
    """Train the demo segmenter (backbone from the ``detector`` checkpoint's ``backbone.body.*``) on the demo's
    training split, its best checkpoint chosen on the tuning split; writes ``out_dir/weights/demo_segmenter.pt``
    (fp16) with its model card (validation metrics of those weights included) and returns its path.
    Interrupted runs continue where they stopped when called again with the same ``out_dir``."""
    out = Path(out_dir)
    data_dir = out / "data"
    _, train_images = prepare_split(data_dir, "train", recipe.train_images, recipe, labels=True, progress=progress)
    _, tune_images = prepare_split(out / "tune_data", "val", seg.tune_images, replace(recipe, seed=seg.tune_seed),
                                   labels=True, progress=progress)
    data = {"train_images": train_images, "train_labels": data_dir / "labels" / "train",
            "val_images": tune_images, "val_labels": out / "tune_data" / "labels" / "val",
            "classes": data_dir / "classes.json"}
    start = time.perf_counter()
    run = out / "segmenter_run"
    summary = train_segmenter(segmenter_config(recipe, seg, data, detector), run, device=device,
                              resume=Checkpointer(run).has_checkpoint(), progress=progress)
    checkpoint, weights, wall = _ship_run(run, out / "weights" / SEGMENTER_FILE, start)
    val_ann, val_images = prepare_split(data_dir, "val", recipe.val_images, recipe, labels=True, progress=progress)
    semantic = evaluate_segmenter(weights, read_json(val_ann), val_images, data_dir / "labels" / "val",
                                  input_size=seg.test_input, device=device, progress=progress)
    history = _run_history(run)
    tuning = _checkpoint_metrics(summary, checkpoint, history, lambda k: k in ("mIoU", "aAcc", "mAcc"))
    _write_card(weights.with_suffix(".json"), weights=weights, command=command, recipe=recipe,
                iterations=summary["iteration"], wall_time_s=wall,
                metrics={"val": {k: semantic[k] for k in ("mIoU", "aAcc", "mAcc", "per_class")}, "tune": tuning},
                history=history,
                extra={"segmenter_recipe": asdict(seg), "checkpoint": checkpoint.name,
                       "backbone_init": _backbone_init_card(detector)})
    return weights


def pose_config(recipe: DemoRecipe, pose: PoseDemoRecipe, data: Mapping[str, Any],
                detector: str | os.PathLike) -> PoseTrainConfig:
    """The pose network's training config that ``recipe`` / ``pose`` decide, on ``data`` (``train_json``,
    ``train_images``, ``val_json``, ``val_images``), its backbone (the detector's architecture) initialised from
    the detector checkpoint ``detector``."""
    backbone_kwargs = plain_value(recipe.detector_model_kwargs.get("backbone_kwargs", {}))
    model = PoseNetConfig(backbone=recipe.detector_backbone, head=pose.head, overrides=backbone_kwargs,
                          backbone_weights=None, backbone_init=os.fspath(detector), input_size=[pose.input, pose.input],
                          target=pose.target, decode=pose.decode)
    train = replace(TrainConfig(), iters=pose.iters, batch_size=pose.batch, lr=pose.lr, weight_decay=0.0,
                    schedule="step", warmup_iters=0, eval_every=pose.eval_every, eval_batch_size=64,
                    checkpoint_every=max(pose.eval_every, 100), keep_checkpoints=2, log_every=10, workers=0,
                    seed=recipe.seed)
    return PoseTrainConfig(data=PoseDataConfig(**{k: os.fspath(v) for k, v in data.items()}, rotation=pose.rotation),
                           model=model, train=train)


def evaluate_pose(weights: Path, ann: Path, images: Path, *, boxes: Path | None = None,
                  min_score: float = PoseDemoRecipe.box_score, device: str | torch.device = "auto",
                  out: Path | None = None, progress: bool = False) -> dict[str, Any]:
    """Keypoint AP (pycocotools, the categories' OKS sigmas) of the pose ``weights`` on the ground-truth boxes
    of ``ann``, or on the detections of the COCO results file ``boxes`` scoring at least ``min_score`` (flip
    test, the checkpoint's decoding, OKS-NMS at ``OKS_NMS`` as ``pose predict``); the results go to ``out`` when
    given; ``progress`` shows a bar over the batches."""
    model, meta = load_pose_model(weights)
    dev = resolve_device(device) if isinstance(device, str) else device
    layout = KeypointLayout(meta["categories"], f"{weights} (model spec)")
    instances = (gt_box_instances(ann, images, layout) if boxes is None
                 else result_box_instances(boxes, images, layout, ann=ann, min_score=min_score))
    results = predict_keypoints(model.to(dev), instances, layout, device=dev, decode=meta.get("decode", "quarter"),
                                unbiased=meta.get("unbiased", False), progress=progress)
    results = oks_nms_results(results, layout, OKS_NMS, aspect=model.input_size[1] / model.input_size[0])
    if out is not None:
        write_json(out, results, indent=None)
    return evaluate(read_json(ann), results, ("keypoints",))["keypoints"] if results else {"AP": 0.0}


def train_demo_pose(out_dir: str | os.PathLike, detector: str | os.PathLike, *, recipe: DemoRecipe = DemoRecipe(),
                    pose: PoseDemoRecipe = PoseDemoRecipe(), device: str = "auto",
                    command: str = "densevision demo --train", progress: bool = True) -> Path:
    """Train the demo pose network (backbone from the ``detector`` checkpoint's ``backbone.body.*``) on the
    demo's training split, its best checkpoint chosen on the tuning split; writes ``out_dir/weights/demo_pose.pt``
    (fp16) with its model card (validation keypoint AP of those weights included) and returns its path.
    Interrupted runs continue where they stopped when called again with the same ``out_dir``."""
    out = Path(out_dir)
    data_dir = out / "data"
    train_ann, train_images = prepare_split(data_dir, "train", recipe.train_images, recipe, progress=progress)
    tune_ann, tune_images = prepare_split(out / "tune_data", "val", pose.tune_images,
                                          replace(recipe, seed=pose.tune_seed), progress=progress)
    data = {"train_json": train_ann, "train_images": train_images, "val_json": tune_ann, "val_images": tune_images}
    start = time.perf_counter()
    run = out / "pose_run"
    summary = train_pose(pose_config(recipe, pose, data, detector), run, device=device,
                         resume=Checkpointer(run).has_checkpoint(), progress=progress)
    checkpoint, weights, wall = _ship_run(run, out / "weights" / POSE_FILE, start)
    val_ann, val_images = prepare_split(data_dir, "val", recipe.val_images, recipe, progress=progress)
    keypoints = evaluate_pose(weights, val_ann, val_images, device=device)
    history = _run_history(run)
    tuning = _checkpoint_metrics(summary, checkpoint, history, lambda k: k.startswith("keypoints/"))
    _write_card(weights.with_suffix(".json"), weights=weights, command=command, recipe=recipe,
                iterations=summary["iteration"], wall_time_s=wall, metrics={"val": keypoints, "tune": tuning},
                history=history,
                extra={"pose_recipe": asdict(pose), "checkpoint": checkpoint.name,
                       "backbone_init": _backbone_init_card(detector)})
    return weights


def train_demo_weights(out_dir: str | os.PathLike, *, recipe: DemoRecipe = DemoRecipe(),
                       seg: SegDemoRecipe = SegDemoRecipe(), pose: PoseDemoRecipe = PoseDemoRecipe(),
                       device: str = "auto", command: str = "densevision demo --train",
                       progress: bool = True) -> dict[str, Path]:
    """Train the demo detector, then the refiner on patches of its training-split predictions, then the
    segmenter and the pose network from the detector's backbone.

    Interrupted runs continue where they stopped when called again with the same ``out_dir``. Writes
    ``out_dir/weights/{demo_detector.pt, demo_refiner.pt, demo_segmenter.pt, demo_pose.pt}`` (fp16) with their
    model cards (``.json``) and returns their paths.
    """
    out = Path(out_dir)
    data_dir, weights = out / "data", out / "weights"
    train_ann, train_images = prepare_split(data_dir, "train", recipe.train_images, recipe, progress=progress)
    val_ann, val_images = prepare_split(data_dir, "val", recipe.val_images, recipe, progress=progress)

    start = time.perf_counter()
    det_run = out / "detector_run"
    data = {"train_json": train_ann, "train_images": train_images, "val_json": val_ann, "val_images": val_images}
    summary = train_detector(detector_config(recipe, data), det_run, device=device,
                             resume=Checkpointer(det_run).has_checkpoint(), progress=progress)
    detector = _half_weights(Path(summary["checkpoint"]), weights / DETECTOR_FILE)
    history = _run_history(det_run)
    _write_card(detector.with_suffix(".json"), weights=detector, command=command, recipe=recipe,
                iterations=summary["iteration"], wall_time_s=time.perf_counter() - start,
                metrics=_checkpoint_metrics(summary, Path(summary["checkpoint"]), history), history=history)

    start = time.perf_counter()
    patches = out / "patches"
    if not (patches / PATCH_INDEX).is_file():
        coarse_train = out / "coarse_train.json"
        predict(detector, train_images, coarse_train, ann=train_ann, device=device, progress=progress)
        build_patch_dataset(read_json(train_ann), train_images, coarse_train, patches, nms_iou=recipe.nms_iou,
                            match_iou=recipe.match_iou, progress=progress)
    ref_run = out / "refiner_run"
    summary = train_refiner(refiner_config(recipe, patches), ref_run, device=device,
                            resume=Checkpointer(ref_run).has_checkpoint(), progress=progress)
    ref_ckpt = find_checkpoint(ref_run)
    refiner = _half_weights(ref_ckpt, weights / REFINER_FILE)
    history = _run_history(ref_run)
    _write_card(refiner.with_suffix(".json"), weights=refiner, command=command, recipe=recipe,
                iterations=summary["iteration"], wall_time_s=time.perf_counter() - start,
                metrics=_checkpoint_metrics(summary, ref_ckpt, history), history=history,
                extra={"refine_rule": refine_rule_card()})
    segmenter = train_demo_segmenter(out, detector, recipe=recipe, seg=seg, device=device, command=command,
                                     progress=progress)
    pose_weights = train_demo_pose(out, detector, recipe=recipe, pose=pose, device=device, command=command,
                                   progress=progress)
    return {"detector": detector, "refiner": refiner, "segmenter": segmenter, "pose": pose_weights}


def shipped_weights() -> dict[str, Path]:
    """The demo weights inside the package (the segmenter and the pose network only when they are there: their
    stages are optional); a clear error when the detector or refiner is missing."""
    paths = {"detector": ASSETS / DETECTOR_FILE, "refiner": ASSETS / REFINER_FILE}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DenseVisionError(f"demo weights not found: {', '.join(missing)}; run `densevision demo --train`")
    for stage, name in (("segmenter", SEGMENTER_FILE), ("pose", POSE_FILE)):
        if (ASSETS / name).is_file():
            paths[stage] = ASSETS / name
    return paths


def evaluate_segmenter(weights: Path, gt: Mapping[str, Any], images: Path, labels: Path, *,
                       input_size: int | None = None, coarse: list[dict[str, Any]] | None = None,
                       out_dir: Path | None = None, device: str | torch.device = "auto",
                       progress: bool = True) -> dict[str, Any]:
    """The segmenter ``weights`` on the images of ``gt`` (whole images, longer side rescaled to ``input_size``
    when given) against the label maps in ``labels``: ``{"mIoU", "aAcc", "mAcc", "boundary_mIoU", "per_class"}``
    in percent (Boundary IoU per class with bands of ``BOUNDARY_RATIO`` × the diagonal); with ``coarse``
    (instance results) also ``detector_baseline_mIoU``, ``detector_baseline_boundary_mIoU`` (and
    ``detector_baseline``, its full results): those results scoring at least ``BASELINE_SCORE`` rendered to label
    maps (higher scores on top) and scored the same way. Predicted label
    PNGs go to ``out_dir`` (a temporary folder when None)."""
    import tempfile

    model = load_segmenter(weights).to(resolve_device(device) if isinstance(device, str) else device)
    classes = model.classes
    cat_to_class = {c["id"]: classes.index(c["name"]) for c in gt["categories"]}
    with tempfile.TemporaryDirectory() as tmp:
        pred_dir = Path(out_dir) if out_dir is not None else Path(tmp)
        predict_folder(model, images, pred_dir, input_size=input_size, progress=progress)
        segmenter = SemanticEvaluator(classes, boundary_ratio=BOUNDARY_RATIO)
        baseline = SemanticEvaluator(classes, boundary_ratio=BOUNDARY_RATIO)
        by_image: dict[int, list[dict[str, Any]]] = {}
        for r in coarse or []:
            by_image.setdefault(r["image_id"], []).append({**r, "category_id": cat_to_class[r["category_id"]]})
        for info in gt["images"]:
            stem = Path(info["file_name"]).stem
            label = torch.from_numpy(read_label_map(labels / f"{stem}.png").astype("int64"))
            pred = torch.from_numpy(read_label_map(pred_dir / f"{stem}.png").astype("int64"))
            segmenter.update(pred, label)
            rendered = results_to_label_map(by_image.get(info["id"], []), info["height"], info["width"],
                                            score_thr=BASELINE_SCORE)
            baseline.update(torch.from_numpy(rendered.astype("int64")), label)
    out = segmenter.results()
    if coarse is not None:
        out["detector_baseline"] = baseline.results()
        out["detector_baseline_mIoU"] = out["detector_baseline"]["mIoU"]
        out["detector_baseline_boundary_mIoU"] = out["detector_baseline"]["boundary_mIoU"]
    return out


def run_pipeline(out_dir: str | os.PathLike, weights: dict[str, Path], *, recipe: DemoRecipe = DemoRecipe(),
                 seg: SegDemoRecipe = SegDemoRecipe(), pose: PoseDemoRecipe = PoseDemoRecipe(), device: str = "auto",
                 progress: bool = True) -> dict[str, Any]:
    """Detector on the validation split, refinement of its masks, both evaluated; with a ``segmenter`` in
    ``weights`` also the semantic stage (label maps in ``semantic/``, ``semantic_figure.png``), with ``pose``
    the keypoint stage (``keypoints_gt_boxes.json`` from the ground-truth boxes, ``keypoints.json`` from the
    detector's boxes: detection then pose). Writes ``coarse.json``, ``refined.json``, ``metrics.json``,
    ``report.md`` and ``figure.png`` into ``out_dir``."""
    out = Path(out_dir)
    val_ann, val_images = prepare_split(out / "data", "val", recipe.val_images, recipe,
                                        labels="segmenter" in weights, progress=progress)
    gt = read_json(val_ann)
    device = resolve_device(device)
    timings: dict[str, float] = {}

    start = time.perf_counter()
    coarse_path = out / "coarse.json"
    predicted = predict(weights["detector"], val_images, coarse_path, ann=val_ann, device=device,
                        input_size=recipe.detector_test_input, progress=progress)
    timings["detector_s"] = time.perf_counter() - start
    coarse = read_json(coarse_path)

    start = time.perf_counter()
    refiner = load_refine_net(weights["refiner"])
    stages: dict[str, float] = {}
    refined = refine_results(gt["images"], val_images, coarse, refiner, nms_iou=recipe.nms_iou, device=device,
                             progress=progress, stats=stages)
    timings["refine_s"] = time.perf_counter() - start
    timings.update({f"refine_{k}_s": v for k, v in stages.items()})
    refined_path = out / "refined.json"
    write_json(refined_path, refined, indent=None)

    metrics = {"coarse": evaluate(gt, coarse, IOU_TYPES) if coarse else _zero_metrics(),
               "refined": evaluate(gt, refined, IOU_TYPES) if refined else _zero_metrics()}
    semantic_figure = None
    if "segmenter" in weights:
        start = time.perf_counter()
        labels = out / "data" / "labels" / "val"
        semantic = evaluate_segmenter(weights["segmenter"], gt, val_images, labels, input_size=seg.test_input,
                                      coarse=coarse, out_dir=out / "semantic", device=device, progress=progress)
        timings["semantic_s"] = time.perf_counter() - start
        metrics["semantic"] = {k: semantic[k] for k in ("mIoU", "aAcc", "mAcc", "per_class", "boundary_mIoU",
                                                        "detector_baseline_mIoU", "detector_baseline_boundary_mIoU")}
        semantic_figure = write_semantic_figure(out / "semantic_figure.png", [
            (val_images / i["file_name"], labels / f"{Path(i['file_name']).stem}.png",
             out / "semantic" / f"{Path(i['file_name']).stem}.png") for i in gt["images"][:3]])
    if "pose" in weights:
        start = time.perf_counter()
        metrics["pose"] = {
            "gt_boxes": evaluate_pose(weights["pose"], val_ann, val_images, device=device,
                                      out=out / "keypoints_gt_boxes.json", progress=progress),
            "detector_boxes": evaluate_pose(weights["pose"], val_ann, val_images, boxes=coarse_path,
                                            min_score=pose.box_score, device=device, out=out / "keypoints.json",
                                            progress=progress)}
        timings["pose_s"] = time.perf_counter() - start
    write_json(out / "metrics.json", metrics)
    _, info = load_detector(weights["detector"])
    figure = write_demo_figures(out / "figure.png", gt, val_images, coarse, refined, info.class_names,
                                loss_history=_card(weights["detector"]).get("learning_curve", []))
    setting = f"detector input {predicted['input_size']} px short side, trained at {info.model['min_size']}"
    seg_setting = f"input {seg.test_input or 'the image size'}"
    _write_report(out / "report.md", metrics, timings, weights, figure, setting=setting,
                  semantic_setting=seg_setting, semantic_figure=semantic_figure, pose_box_score=pose.box_score)
    return {"metrics": metrics, "timings": timings, "report": out / "report.md", "figure": figure,
            "semantic_figure": semantic_figure}


def _zero_metrics() -> dict[str, dict[str, float]]:
    return {t: {k: 0.0 for k in ("AP", "AP50", "AP75", "APs", "APm", "APl")} for t in IOU_TYPES}


def _card(weights: Path) -> dict[str, Any]:
    card = weights.with_suffix(".json")
    return json.loads(card.read_text()) if card.is_file() else {}


def _write_report(path: Path, metrics: dict[str, Any], timings: dict[str, float], weights: dict[str, Path],
                  figure: Path, setting: str, semantic_setting: str = "", semantic_figure: Path | None = None,
                  pose_box_score: float = PoseDemoRecipe.box_score) -> None:
    lines = ["# densevision demo", "",
             f"Mask R-CNN on the synthetic validation split ({setting}), then Boundary Patch Refinement of its "
             "masks.", ""]
    for stage in ("coarse", "refined"):
        lines += [f"## {stage}", "", "```", format_table(metrics[stage]), "```", ""]
    gain = {t: metrics["refined"][t]["AP"] - metrics["coarse"][t]["AP"] for t in IOU_TYPES}
    lines += ["## Refinement gain (AP points)", "",
              " | ".join(f"{t}: {gain[t]:+.2f}" for t in IOU_TYPES), "",
              "## Refinement gain per area range (small < 32², medium < 96², large)", "",
              gain_table({k: metrics[k] for k in ("coarse", "refined")}, ("segm", "boundary"),
                         ("AP", "APs", "APm", "APl")), ""]
    lines += ["## Semantic segmentation", ""]
    if "semantic" in metrics:
        semantic = metrics["semantic"]
        baseline = semantic["detector_baseline_mIoU"]
        baseline_boundary = semantic["detector_baseline_boundary_mIoU"]
        lines += [f"Semantic FPN segmenter on the validation split (whole images, {semantic_setting}); baseline: "
                  f"the detector's masks scoring at least {BASELINE_SCORE} rendered to label maps (higher scores "
                  "on top).", "",
                  "```", semantic_table(semantic), "```", "",
                  f"detector baseline mIoU: {'n/a' if baseline is None else f'{baseline:.2f}'}, boundary mIoU: "
                  f"{'n/a' if baseline_boundary is None else f'{baseline_boundary:.2f}'}", ""]
        if semantic_figure is not None:
            lines += [f"![semantic figure]({semantic_figure.name})", ""]
    else:
        lines += [f"Skipped: no segmenter weights (`{SEGMENTER_FILE}`); `densevision demo --train` makes them.", ""]
    lines += ["## Keypoints", ""]
    if "pose" in metrics:
        pose = metrics["pose"]
        lines += ["Top-down keypoints (OKS sigma 0.025 for every keypoint) on the validation split, from the "
                  f"ground-truth boxes and from the detector's boxes scoring at least {pose_box_score} (detection "
                  "then pose).", "",
                  "| boxes | AP | AP50 | AP75 |", "| --- | --- | --- | --- |"]
        lines += [f"| {name.replace('_', ' ')} | " + " | ".join(f"{pose[name].get(k, 0.0):.2f}"
                                                             for k in ("AP", "AP50", "AP75")) + " |"
                  for name in ("gt_boxes", "detector_boxes")]
        lines.append("")
    else:
        lines += [f"Skipped: no pose weights (`{POSE_FILE}`); `densevision demo --train` makes them.", ""]
    lines += ["## Timings (s)", "", *[f"- {k}: {v:.1f}" for k, v in timings.items()], "",
              "## Weights", ""]
    for name, w in weights.items():
        card = _card(w)
        lines.append(f"- {name}: `{w.name}` sha256 {card.get('sha256', _sha256(w))[:16]}…, "
                     f"{card.get('iterations', '?')} iterations, command `{card.get('command', '?')}`")
    lines += ["", f"![figure]({figure.name})", ""]
    with atomic_open(path, "w") as f:
        f.write("\n".join(lines))


def run_demo(out_dir: str | os.PathLike = "runs/demo", *, train: bool = False, quick: bool = False,
             device: str = "auto", detector_input: int | None = None, progress: bool = True) -> dict[str, Any]:
    """``make demo``: the pipeline on the shipped weights, or on freshly trained ones (``train`` / ``quick``);
    ``detector_input`` overrides the recipe's inference size of the detector."""
    require("matplotlib", "the demo's figures")
    recipe, seg, pose = ((QUICK_RECIPE, QUICK_SEG_RECIPE, QUICK_POSE_RECIPE) if quick
                         else (DemoRecipe(), SegDemoRecipe(), PoseDemoRecipe()))
    if detector_input is not None:
        recipe = replace(recipe, detector_test_input=detector_input)
    if train or quick:
        command = "densevision " + " ".join(sys.argv[1:]) if sys.argv[1:2] == ["demo"] else "run_demo"
        weights = train_demo_weights(out_dir, recipe=recipe, seg=seg, pose=pose, device=device, command=command,
                                     progress=progress)
    else:
        weights = shipped_weights()
    return run_pipeline(out_dir, weights, recipe=recipe, seg=seg, pose=pose, device=device, progress=progress)
