"""Detector outputs -> COCO results: ``bbox`` XYWH, RLE ``segmentation``, ``keypoints`` of the detection's category,
the data set's own category ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from densevision.data.masks import encode_masks
from densevision.errors import DenseVisionError


def keypoint_triplets(out: Mapping[str, torch.Tensor], keep: torch.Tensor) -> torch.Tensor:
    """The kept detections' stacked keypoints as N×J×3 float ``(x, y, score)`` on the CPU, from Keypoint R-CNN's
    ``keypoints`` (N×J×3, image pixels) and ``keypoints_scores`` (N×J heatmap logits at the peaks)."""
    return torch.cat([out["keypoints"][keep][..., :2], out["keypoints_scores"][keep][..., None]],
                     dim=-1).detach().float().cpu()


def detections_to_coco(
    outputs: Sequence[Mapping[str, torch.Tensor]],
    image_ids: Sequence[int],
    label_to_cat: Mapping[int, int],
    *,
    score_thr: float = 0.0,
    mask_thr: float = 0.5,
    keypoint_channels: Mapping[int, slice] | None = None,
) -> list[dict[str, Any]]:
    """Convert torchvision detection outputs (one dict per image) to a COCO results list.

    Each output holds ``boxes`` (N×4 XYXY, original image pixels), ``labels`` (N, contiguous from 1),
    ``scores`` (N) and possibly ``masks`` (N×1×H×W probabilities; binarised at ``mask_thr``) and Keypoint
    R-CNN's ``keypoints`` (N×J×3, image pixels) with ``keypoints_scores`` (N×J heatmap logits at the peaks).
    With ``keypoint_channels`` (category id -> its slice of the J stacked channels, see
    :func:`~densevision.detection.keypoint_rcnn.keypoint_channels`), a detection of a category with keypoints
    gets ``keypoints``: ``[x, y, score] × K`` of its category's slice only. Detections scoring below
    ``score_thr`` are dropped.
    """
    if len(outputs) != len(image_ids):
        raise ValueError(f"{len(outputs)} outputs for {len(image_ids)} image ids")
    results: list[dict[str, Any]] = []
    for out, image_id in zip(outputs, image_ids, strict=True):
        keep = out["scores"] >= score_thr
        boxes = out["boxes"][keep].detach().float().cpu()
        scores = out["scores"][keep].detach().float().cpu().tolist()
        labels = out["labels"][keep].cpu().tolist()
        rles = encode_masks(out["masks"][keep][:, 0] >= mask_thr) if "masks" in out else [None] * len(labels)
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        keypoints = keypoint_triplets(out, keep) if keypoint_channels is not None and "keypoints" in out else None
        for i, (box, score, label, rle) in enumerate(zip(xywh, scores, labels, rles, strict=True)):
            if label not in label_to_cat:
                raise DenseVisionError(
                    f"model predicted label {label}, which has no category id (known labels: "
                    f"{sorted(label_to_cat)}); the checkpoint does not match the data set"
                )
            result = {"image_id": int(image_id), "category_id": int(label_to_cat[label]), "bbox": box,
                      "score": score}
            if rle is not None:
                result["segmentation"] = rle
            channels = None if keypoints is None else keypoint_channels.get(result["category_id"])
            if channels is not None:
                result["keypoints"] = keypoints[i, channels].flatten().tolist()
            results.append(result)
    return results
