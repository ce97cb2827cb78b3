"""BPR training data: boundary patches of detector masks, stored in compact shards, and the training dataset.

A patch folder holds ``shard_00000.pt, shard_00001.pt, ...`` and ``index.json`` (written last, so a folder
without it is incomplete). Each shard is a dict of tensors, read with
``torch.load(weights_only=True, mmap=True)``:

=============  ===============  ===========================================================
``image``      K×3×P×P uint8    RGB image patch
``coarse``     K×P×P uint8      the detector's mask (0/1)
``gt``         K×P×P uint8      the best-matching ground-truth mask (0/1), same box
``box``        K×4 int32        ``(x0, y0, x1, y1)`` in the image
``image_id``   K int64          the image
``instance``   K int64          running number of the kept detection (splits train / val by instance)
=============  ===============  ===========================================================

Detections are kept when their mask IoU with a same-category, non-crowd ground truth exceeds ``match_iou``.
"""

from __future__ import annotations

import os
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from densevision.data.coco import check_coco, coco_from_dict, load_coco
from densevision.data.images import ImageRecord, record_from_entry
from densevision.data.jsonio import read_json
from densevision.data.masks import decode_masks, rle_ious, to_rle
from densevision.data.results import load_results
from densevision.data.transforms import PhotometricJitter, RandomHorizontalFlip
from densevision.errors import DataError, DenseVisionError
from densevision.io import save_torch, write_json
from densevision.refine.patches import DEFAULT_NMS_IOU, DEFAULT_PATCH_SIZE, crop_patches, patch_chunks

INDEX_FILE = "index.json"
FORMAT = "densevision-bpr-patches"
VERSION = 1
SHARD_KEYS = ("image", "coarse", "gt", "box", "image_id", "instance")
DEFAULT_MATCH_IOU = 0.5
_CHUNK_INSTANCES = 16  # masks decoded at a time: bounds memory to 16 × H × W bytes per mask kind


def match_detections(
    dt_rles: Sequence[dict], dt_cats: Sequence[int], gt_rles: Sequence[dict], gt_cats: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Best same-category ground truth of each detection by mask IoU.

    Returns ``(gt_index, iou)``, two D arrays; ``gt_index`` is −1 (IoU 0) where no ground truth shares the
    category.
    """
    d = len(dt_rles)
    if d == 0 or not gt_rles:
        return np.full(d, -1), np.zeros(d)
    ious = rle_ious(dt_rles, gt_rles)
    ious = np.where(np.asarray(dt_cats)[:, None] == np.asarray(gt_cats)[None, :], ious, -1.0)
    best = ious.argmax(1)
    iou = ious[np.arange(d), best]
    return np.where(iou >= 0, best, -1), np.maximum(iou, 0.0)


class _ShardWriter:
    """Buffers patches and writes a shard every ``shard_size`` patches."""

    def __init__(self, out_dir: Path, shard_size: int) -> None:
        self.out_dir, self.shard_size = out_dir, shard_size
        self.parts: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.buffered = 0
        self.shards: list[dict[str, Any]] = []

    def add(self, **tensors: torch.Tensor) -> None:
        for key in SHARD_KEYS:
            self.parts[key].append(tensors[key])
        self.buffered += len(tensors["image"])
        while self.buffered >= self.shard_size:
            self._write(self.shard_size)

    def _write(self, count: int) -> None:
        joined = {key: torch.cat(self.parts[key]) for key in SHARD_KEYS}
        shard = {key: value[:count].clone() for key, value in joined.items()}
        self.parts = defaultdict(list, {key: [value[count:]] for key, value in joined.items()})
        self.buffered -= count
        name = f"shard_{len(self.shards):05d}.pt"
        save_torch(self.out_dir / name, shard)
        self.shards.append({"file": name, "patches": count})

    def close(self) -> list[dict[str, Any]]:
        if self.buffered:
            self._write(self.buffered)
        return self.shards


def build_patch_dataset(
    dataset: dict | str | os.PathLike,
    image_root: str | os.PathLike,
    results: str | os.PathLike | Sequence[dict],
    out_dir: str | os.PathLike,
    *,
    patch_size: int = DEFAULT_PATCH_SIZE,
    nms_iou: float = DEFAULT_NMS_IOU,
    match_iou: float = DEFAULT_MATCH_IOU,
    shard_size: int = 4096,
    progress: bool = True,
) -> dict[str, Any]:
    """Cut image / coarse-mask / ground-truth patches around the boundaries of matched detections.

    Args:
        dataset: the COCO ground truth: a json path or a dict (validated like :func:`densevision.data.coco.load_coco`).
        image_root: the folder the images' file names are relative to.
        results: COCO results (path or list) of a detector on these images, polygon or RLE masks.
        out_dir: the patch folder to create (must not already hold patches).
        patch_size / nms_iou: patch side and proposal NMS threshold (BPR: 64 and 0.25 for training data).
        match_iou: keep detections whose mask IoU with a same-category non-crowd ground truth exceeds this.
        shard_size: patches per shard file.

    Returns:
        The index written to ``out_dir/index.json`` (counts of images, detections, kept instances, patches).
    """
    out = Path(out_dir)
    if (out / INDEX_FILE).exists() or any(out.glob("shard_*.pt")):
        raise DenseVisionError(f"{out} already holds a patch data set; choose another folder")
    if patch_size < 2 or shard_size < 1:
        raise DenseVisionError(f"patch size must be >= 2 and shard size >= 1, got {patch_size}, {shard_size}")
    source = str(dataset) if isinstance(dataset, (str, os.PathLike)) else "ground truth"
    dataset = load_coco(dataset) if isinstance(dataset, (str, os.PathLike)) else check_coco(dataset, source)
    coco = coco_from_dict(dataset)
    checked = load_results(results, coco.imgs, coco.cats, ("segmentation",))
    by_image: dict[int, list[dict]] = defaultdict(list)
    for r in checked:
        by_image[r["image_id"]].append(r)
    out.mkdir(parents=True, exist_ok=True)
    writer = _ShardWriter(out, shard_size)
    image_ids = [i for i in sorted(coco.imgs) if i in by_image]
    gt_rles: dict[int, list[dict]] = {}

    def matched() -> Iterator[tuple[ImageRecord, list[int], list[dict]]]:
        """Per image with kept detections: its record, the kept detections' matched ground truth, their masks."""
        for image_id in tqdm(image_ids, desc="bpr patches", unit="img", disable=not progress):
            info = coco.imgs[image_id]
            h, w = info["height"], info["width"]
            gts = [a for a in coco.imgToAnns.get(image_id, []) if not a.get("iscrowd", 0)]
            dets = by_image[image_id]
            gt_rles.clear()  # the previous image's chunks are all cut before the next image is asked for
            gt_rles[image_id] = [to_rle(a["segmentation"], h, w) for a in gts]
            match, iou = match_detections([d["segmentation"] for d in dets], [d["category_id"] for d in dets],
                                          gt_rles[image_id], [a["category_id"] for a in gts])
            keep = np.nonzero(iou > match_iou)[0]
            if len(keep):
                yield (record_from_entry(info, image_root, source), match[keep].tolist(),
                       [dets[k]["segmentation"] for k in keep])

    kept = 0
    for c in patch_chunks(matched(), patch_size=patch_size, nms_iou=nms_iou, chunk=_CHUNK_INSTANCES):
        h, w = c.masks.shape[1:]
        gt = decode_masks([gt_rles[c.image_id][g] for g in c.keys], h, w)
        writer.add(
            image=c.images,
            coarse=c.coarse.to(torch.uint8),
            gt=crop_patches(gt, c.boxes, c.instance, patch_size).to(torch.uint8),
            box=c.boxes.to(torch.int32),
            image_id=torch.full_like(c.instance, c.image_id),
            instance=c.instance + kept,
        )
        kept += len(c.keys)
    shards = writer.close()
    index = {
        "format": FORMAT,
        "version": VERSION,
        "patch_size": patch_size,
        "nms_iou": nms_iou,
        "match_iou": match_iou,
        "images": len(image_ids),
        "detections": len(checked),
        "instances": kept,
        "patches": sum(s["patches"] for s in shards),
        "shards": shards,
    }
    write_json(out / INDEX_FILE, index)
    return index


def read_patch_index(patch_dir: str | os.PathLike) -> dict[str, Any]:
    """The ``index.json`` of a patch folder, checked."""
    path = Path(patch_dir) / INDEX_FILE
    if not path.is_file():
        raise DataError(f"{patch_dir}: no {INDEX_FILE}; not a complete folder of `densevision bpr patches`")
    index = read_json(path)
    if not isinstance(index, dict) or index.get("format") != FORMAT:
        raise DataError(f"{path}: not a densevision BPR patch index")
    if index.get("version") != VERSION:
        raise DataError(f"{path}: patch format version {index.get('version')}; this version reads {VERSION}")
    return index


class PatchDataset(torch.utils.data.Dataset):
    """Patches of a folder written by :func:`build_patch_dataset`.

    ``ds[i] -> (image, coarse, gt)``: float32 3×P×P in [0, 1], uint8 P×P, int64 P×P. Shards are memory-mapped,
    so the folder may be larger than memory.

    Args:
        patch_dir: the patch folder.
        split: ``"all"``, or ``"train"`` / ``"val"``: the instances whose number is (not) a multiple of
            ``val_every`` (all patches of an instance fall on the same side).
        val_every: one instance in ``val_every`` is held out for validation.
        augment: random horizontal flip and photometric distortion (training).
    """

    def __init__(self, patch_dir: str | os.PathLike, *, split: str = "all", val_every: int = 20,
                 augment: bool = False) -> None:
        if split not in ("all", "train", "val"):
            raise ValueError(f"split must be 'all', 'train' or 'val', got {split!r}")
        self.patch_dir = Path(patch_dir)
        self.index = read_patch_index(patch_dir)
        self.patch_size = int(self.index["patch_size"])
        self.shards: list[dict[str, torch.Tensor]] = []
        rows: list[torch.Tensor] = []
        for entry in self.index["shards"]:
            shard = self._load_shard(self.patch_dir / entry["file"], int(entry["patches"]))
            selected = torch.ones(len(shard["image"]), dtype=torch.bool)
            if split != "all":
                selected = (shard["instance"] % val_every == 0) == (split == "val")
            self.shards.append(shard)
            rows.append(torch.nonzero(selected).flatten())
        self._rows = rows
        self._starts = np.cumsum([0] + [len(r) for r in rows]).tolist()
        self.flip = RandomHorizontalFlip(0.5) if augment else None
        self.jitter = PhotometricJitter(0.25, 0.5, 0.5, 0.05) if augment else None

    def _load_shard(self, path: Path, count: int) -> dict[str, torch.Tensor]:
        try:
            shard = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except FileNotFoundError:
            raise DataError(f"{path}: shard listed in {INDEX_FILE} is missing") from None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is a data problem
            raise DataError(f"{path}: unreadable patch shard ({exc.__class__.__name__})") from None
        p = self.patch_size
        expected = {"image": (count, 3, p, p), "coarse": (count, p, p), "gt": (count, p, p),
                    "box": (count, 4), "image_id": (count,), "instance": (count,)}
        for key, shape in expected.items():
            value = shard.get(key) if isinstance(shard, dict) else None
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                raise DataError(f"{path}: '{key}' is missing or not of shape {shape}")
        return shard

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not 0 <= i < len(self):
            raise IndexError(i)
        s = bisect_right(self._starts, i) - 1
        row = int(self._rows[s][i - self._starts[s]])
        shard = self.shards[s]
        image = shard["image"][row].float().div_(255.0)
        coarse, gt = shard["coarse"][row], shard["gt"][row]
        if self.flip is not None:
            image, target = self.flip(image, {"masks": torch.stack([coarse, gt])})
            coarse, gt = target["masks"]
        if self.jitter is not None:
            image, _ = self.jitter(image, {})
        return image.contiguous(), coarse.contiguous(), gt.long()
