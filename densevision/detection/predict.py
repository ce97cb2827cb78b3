"""Running a trained Mask R-CNN (or Cascade / Keypoint R-CNN): checkpoint loading, image lists, batched inference
to COCO results, overlays.

A detector checkpoint is a training checkpoint of :mod:`densevision.engine` (a run directory gives its
``best.pt``, else ``last.pt``) or an exported file (:func:`export_detector`); both hold the weights under
``"model"`` and a ``mask_rcnn`` model spec: the builder config (``build_mask_rcnn(**config)``), the data
set's categories in label order and, for Keypoint R-CNN, its keypoint layout, so nothing else is needed to
predict (checkpoints of earlier versions keep them in ``config["detector"]``). The same :func:`run_detector`
produces the in-training evaluation and ``densevision predict`` output, so both score identically.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn
from tqdm import tqdm

from densevision.data.images import (
    ImageDataset,
    ImageRecord,
    read_image,
    records_from_coco,
    records_from_folder,
)
from densevision.data.keypoints import KeypointLayout
from densevision.data.loader import OneLineErrorLoader
from densevision.data.results import images_json_path, write_results
from densevision.detection.keypoint_rcnn import keypoint_channels
from densevision.detection.mask_rcnn import build_mask_rcnn
from densevision.detection.results import detections_to_coco
from densevision.engine.checkpoint import MODEL_SPEC, find_checkpoint, model_spec, read_model_spec
from densevision.engine.device import resolve_device
from densevision.errors import CheckpointError, DataError, DenseVisionError
from densevision.io import save_torch, write_json
from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint


@dataclass(frozen=True)
class DetectorInfo:
    """What a detector checkpoint says besides its weights: the builder arguments, the categories
    (``[{"id", "name"}]``, index ``i`` = label ``i + 1``) and, for Keypoint R-CNN, the categories with keypoints
    as :meth:`~densevision.data.keypoints.KeypointLayout.to_meta` writes them (None otherwise)."""

    model: dict[str, Any]
    categories: list[dict[str, Any]]
    keypoints: list[dict[str, Any]] | None = None

    @property
    def keypoint_channels(self) -> dict[int, slice] | None:
        """Category id -> its slice of the stacked keypoint channels; None without keypoints."""
        return None if self.keypoints is None else keypoint_channels(KeypointLayout(self.keypoints))

    @property
    def label_to_cat(self) -> dict[int, int]:
        return {i + 1: int(c["id"]) for i, c in enumerate(self.categories)}

    @property
    def class_names(self) -> list[str]:
        return [str(c["name"]) for c in self.categories]


def _collate(batch: Sequence[tuple[int, torch.Tensor]]) -> tuple[list[int], list[torch.Tensor]]:
    ids, images = zip(*batch, strict=True)
    return list(ids), list(images)


def run_detector(
    model: nn.Module,
    dataset: ImageDataset,
    label_to_cat: Mapping[int, int],
    *,
    batch_size: int = 2,
    indices: Iterable[int] | None = None,
    score_thr: float = 0.0,
    progress: bool = False,
    num_workers: int = 0,
    keypoint_channels: Mapping[int, slice] | None = None,
) -> list[dict[str, Any]]:
    """COCO results of ``model`` (eval mode, on its own device) over ``dataset`` (or its ``indices``),
    batched in dataset order; with ``keypoint_channels`` (:attr:`DetectorInfo.keypoint_channels`) a Keypoint
    R-CNN's detections carry their category's keypoints."""
    if batch_size < 1:
        raise DenseVisionError(f"batch size must be positive, got {batch_size}")
    subset = dataset if indices is None else torch.utils.data.Subset(dataset, list(indices))
    loader = OneLineErrorLoader(subset, batch_size=batch_size, shuffle=False, collate_fn=_collate,
                                num_workers=num_workers)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    results: list[dict[str, Any]] = []
    try:
        with torch.no_grad():
            for ids, images in tqdm(loader, desc="predict", unit="batch", disable=not progress):
                outputs = model([im.to(device) for im in images])
                outputs = [{k: v.cpu() for k, v in out.items()} for out in outputs]
                results.extend(detections_to_coco(outputs, ids, label_to_cat, score_thr=score_thr,
                                                  keypoint_channels=keypoint_channels))
    finally:
        model.train(was_training)
    return results


def load_detector(
    checkpoint: str | os.PathLike, *, device: str | torch.device = "cpu", trust_checkpoint: bool = False
) -> tuple[nn.Module, DetectorInfo]:
    """Rebuild a trained detector from a checkpoint file or run directory (:func:`find_checkpoint`);
    returns ``(model in eval mode, info)``. ``trust_checkpoint`` allows a file that needs full unpickling."""
    path = find_checkpoint(checkpoint)
    state = read_checkpoint(path, trust_checkpoint=trust_checkpoint)
    spec = read_model_spec(state, str(path))
    if spec is None or spec["builder"] != "mask_rcnn" or "categories" not in spec["meta"]:
        raise CheckpointError(
            f"{path}: not a densevision Mask R-CNN checkpoint (it has no mask_rcnn model spec); "
            "it may belong to another model"
        )
    if not isinstance(state.get("model"), Mapping):
        raise CheckpointError(f"{path}: checkpoint holds no 'model' weights")
    keypoints = spec["meta"].get("keypoints")
    info = DetectorInfo(model=dict(spec["config"]), categories=[dict(c) for c in spec["meta"]["categories"]],
                        keypoints=None if keypoints is None else [dict(c) for c in keypoints])
    _check_keypoint_layout(info, str(path))
    try:
        model = build_mask_rcnn(**info.model)
    except (TypeError, DenseVisionError) as exc:
        raise CheckpointError(f"{path}: its detector config does not fit this version of densevision ({exc})") from None
    load_state_dict_checked(model, state["model"], str(path))
    return model.to(resolve_device(device)).eval(), info


def export_detector(checkpoint: str | os.PathLike, out: str | os.PathLike) -> Path:
    """Write a weights-only detector file (no optimizer state) that :func:`load_detector` reads."""
    model, info = load_detector(checkpoint)
    meta: dict[str, Any] = {"categories": info.categories}
    if info.keypoints is not None:
        meta["keypoints"] = info.keypoints
    spec = model_spec("mask_rcnn", info.model, meta)
    save_torch(out, {"model": model.state_dict(), MODEL_SPEC: spec})
    return Path(out)


def _check_keypoint_layout(info: DetectorInfo, source: str) -> None:
    """A Keypoint R-CNN checkpoint needs a keypoint layout with as many channels as its keypoint head."""
    if info.model.get("detector") != "keypoint_rcnn":
        return
    try:
        layout = KeypointLayout(info.keypoints or [], source)
    except DataError as exc:
        raise CheckpointError(f"{source}: Keypoint R-CNN checkpoint without a usable keypoint layout ({exc})") from None
    if layout.num_joints != info.model.get("num_keypoints"):
        raise CheckpointError(f"{source}: its keypoint layout has {layout.num_joints} keypoints, its model "
                              f"{info.model.get('num_keypoints')}")


def check_categories(info: DetectorInfo, categories: Sequence[Mapping[str, Any]], source: str) -> None:
    """Refuse a data set whose category ids differ from the ones the detector was trained on."""
    if not categories:
        return
    if not all(isinstance(c, Mapping) and isinstance(c.get("id"), int) for c in categories):
        raise DataError(f"{source}: every category needs an integer 'id'")
    theirs = sorted(c["id"] for c in categories)
    ours = sorted(info.label_to_cat.values())
    if theirs != ours:
        raise DataError(
            f"{source}: category ids {theirs} differ from the checkpoint's {ours}; results would be mislabelled"
        )


def write_overlays(
    records: Sequence[ImageRecord],
    results: Sequence[Mapping[str, Any]],
    info: DetectorInfo,
    out_dir: str | os.PathLike,
    *,
    score_thr: float = 0.5,
    progress: bool = False,
) -> list[Path]:
    """One ``<file stem>.png`` overlay per image (masks, boxes, class names, scores) in ``out_dir``; sub-folders
    of the file name become ``__``, and stems shared by several images get ``_<image id>``."""
    from densevision.viz import draw_coco_results, save_png

    names = {int(c["id"]): str(c["name"]) for c in info.categories}
    by_image: dict[int, list] = {}
    for r in results:
        by_image.setdefault(r["image_id"], []).append(r)
    stems = [Path(rec.file_name).with_suffix("").as_posix().replace("/", "__") for rec in records]
    written = []
    for rec, stem in tqdm(list(zip(records, stems, strict=True)), desc="overlays", unit="img", disable=not progress):
        if stems.count(stem) > 1:
            stem = f"{stem}_{rec.image_id}"
        path = Path(out_dir) / f"{stem}.png"
        save_png(path, draw_coco_results(read_image(rec.path), by_image.get(rec.image_id, []), names,
                                         score_thr=score_thr))
        written.append(path)
    return written


def _image_entry(rec: ImageRecord) -> dict[str, Any]:
    with Image.open(rec.path) as im:
        width, height = im.size
    return {"id": rec.image_id, "file_name": rec.file_name, "height": height, "width": width}


def predict(
    checkpoint: str | os.PathLike,
    images: str | os.PathLike,
    out: str | os.PathLike,
    *,
    ann: str | os.PathLike | None = None,
    viz_dir: str | os.PathLike | None = None,
    score_thr: float | None = None,
    viz_score_thr: float = 0.5,
    device: str | torch.device = "auto",
    batch_size: int = 2,
    input_size: int | None = None,
    progress: bool = True,
    trust_checkpoint: bool = False,
) -> dict[str, Any]:
    """Run a trained detector on images and write a COCO results json (RLE masks, Keypoint R-CNN's keypoints
    ``[x, y, score] × K`` of each detection's category, the data set's category ids).

    Args:
        checkpoint: a run directory (its ``best.pt``, else ``last.pt``) or a checkpoint file.
        images: a folder of images or one image file.
        out: the results json to write.
        ann: a COCO json whose ``images`` list gives the ids and file names (relative to ``images``); without
            it every image file in the folder gets an id in sorted file-name order and ``<out>.images.json``
            (images and categories) is written beside the results.
        viz_dir: also write overlay PNGs there (detections scoring at least ``viz_score_thr``).
        score_thr: minimum detection score (default: the checkpoint's ``box_score_thresh``).
        device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"``.
        batch_size, progress: images per forward pass; show a progress bar.
        input_size: short side of the images fed to the network (default: the size the detector was trained at).
        trust_checkpoint: allow a checkpoint that needs full unpickling.

    Returns:
        ``{"results": path, "images_json": path or None, "num_images": n, "num_detections": n, "overlays": dir,
        "input_size": the short side the network saw}``.
    """
    model, info = load_detector(checkpoint, device=resolve_device(device), trust_checkpoint=trust_checkpoint)
    if score_thr is not None:
        model.roi_heads.score_thresh = float(score_thr)
    if input_size is not None:
        model.set_test_size(input_size)
    images_json = None
    if ann is not None:
        records, categories = records_from_coco(ann, images)
        check_categories(info, categories, str(ann))
    else:
        records = records_from_folder(images)
        images_json = images_json_path(out)
    results = run_detector(model, ImageDataset(records), info.label_to_cat, batch_size=batch_size,
                           score_thr=score_thr or 0.0, progress=progress, keypoint_channels=info.keypoint_channels)
    write_results(out, results)
    if images_json is not None:
        write_json(images_json, {"images": [_image_entry(r) for r in records], "categories": info.categories})
    if viz_dir is not None:
        write_overlays(records, results, info, viz_dir, score_thr=viz_score_thr, progress=progress)
    return {"results": Path(out), "images_json": images_json, "num_images": len(records),
            "num_detections": len(results), "overlays": Path(viz_dir) if viz_dir is not None else None,
            "input_size": model.transform.min_size[-1]}
