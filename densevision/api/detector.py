"""``densevision.Detector``: a trained Mask R-CNN (or Cascade Mask R-CNN, Keypoint R-CNN) as a function of one image.

``Detector.from_checkpoint(path)(image)`` gives the same detections as ``densevision detect predict`` on that
image file (same checkpoint loading, preprocessing, score threshold and input size), held in memory as
:class:`Detections` instead of a results json.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from densevision.api.inputs import ImageInput, as_image_array
from densevision.data.labelmaps import image_tensor
from densevision.detection.predict import DetectorInfo, load_detector
from densevision.detection.results import detections_to_coco, keypoint_triplets
from densevision.errors import DenseVisionError

MASK_THRESHOLD = 0.5
"""Mask probabilities at or above this are foreground, as in ``detect predict``'s results."""


@dataclass(frozen=True)
class Detections:
    """The detections of one image, highest score first.

    Attributes:
        boxes: N×4 float32 ``(x0, y0, x1, y1)`` in image pixels.
        scores: N float32.
        category_ids: N int64, the data set's own category ids (not the network's contiguous labels).
        names: N category names.
        masks: N×H×W bool instance masks at the image's size; None for a detector without a mask head.
        keypoints: for Keypoint R-CNN, each detection's K×3 float32 ``(x, y, score)`` of its category's K
            keypoints (score: the heatmap logit at the peak), None for a category without keypoints; None for a
            detector without a keypoint head.
    """

    boxes: np.ndarray
    scores: np.ndarray
    category_ids: np.ndarray
    names: list[str]
    masks: np.ndarray | None
    keypoints: list[np.ndarray | None] | None = None

    def __len__(self) -> int:
        return len(self.scores)

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO results of the image ``image_id``: ``bbox`` XYWH, ``score``, ``category_id`` and (with masks) a
        compressed RLE ``segmentation`` and (with keypoints) flat ``keypoints`` — the entries ``detect predict``
        writes for that image."""
        output = {"boxes": torch.from_numpy(self.boxes), "scores": torch.from_numpy(self.scores),
                  "labels": torch.from_numpy(self.category_ids)}
        if self.masks is not None:
            output["masks"] = torch.from_numpy(self.masks)[:, None]
        results = detections_to_coco([output], [image_id], {int(c): int(c) for c in self.category_ids})
        for result, points in zip(results, self.keypoints or [None] * len(results), strict=True):
            if points is not None:
                result["keypoints"] = points.ravel().tolist()
        return results


class Detector:
    """A trained Mask R-CNN, Cascade Mask R-CNN or Keypoint R-CNN that maps one image to its :class:`Detections`.

    Build it with :meth:`from_checkpoint`; ``detector(image)`` takes a path, a PIL image, an H×W×3 uint8 RGB
    array or a 3×H×W float tensor in [0, 1] (:func:`~densevision.api.image.as_image_array`).

    Args:
        model: the network in eval mode (as :func:`~densevision.detection.predict.load_detector` returns it).
        info: its categories.
        score_thr: detections scoring below this are dropped.
    """

    def __init__(self, model: nn.Module, info: DetectorInfo, *, score_thr: float = 0.0) -> None:
        self.model = model.eval()
        self.info = info
        self.score_thr = score_thr
        self._names = {int(c["id"]): str(c["name"]) for c in info.categories}

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        score_thr: float | None = None,
        input_size: int | None = None,
        trust_checkpoint: bool = False,
    ) -> Detector:
        """Load a detector as ``detect predict`` does.

        Args:
            path: a ``detect train`` run directory (its ``best.pt``, else ``last.pt``) or a checkpoint file
                (e.g. ``densevision/assets/demo_detector.pt``).
            device: ``"auto"`` (CUDA when available), ``"cpu"``, ``"cuda"`` or ``"cuda:N"``.
            score_thr: minimum detection score in [0, 1] (default: the checkpoint's ``box_score_thresh``).
            input_size: short side of the image the network sees (default: the size it was trained at).
            trust_checkpoint: allow a checkpoint that needs full unpickling (runs code from the file).
        """
        if score_thr is not None and not 0.0 <= score_thr <= 1.0:
            raise DenseVisionError(f"score_thr must be in [0, 1], got {score_thr}")
        model, info = load_detector(path, device=device, trust_checkpoint=trust_checkpoint)
        if score_thr is not None:
            model.roi_heads.score_thresh = float(score_thr)
        if input_size is not None:
            model.set_test_size(input_size)
        return cls(model, info, score_thr=score_thr or 0.0)

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The categories the detector was trained on, ``[{"id", "name"}]``."""
        return self.info.categories

    def __call__(self, image: ImageInput) -> Detections:
        """The detections of ``image`` (see the class docstring for the accepted inputs)."""
        tensor = image_tensor(as_image_array(image))
        device = next(self.model.parameters()).device
        with torch.no_grad():
            out = self.model([tensor.to(device)])[0]
        keep = out["scores"] >= self.score_thr
        label_to_cat = self.info.label_to_cat
        ids = np.array([label_to_cat[label] for label in out["labels"][keep].tolist()], dtype=np.int64)
        masks = out["masks"][keep][:, 0] >= MASK_THRESHOLD if "masks" in out else None
        return Detections(
            boxes=out["boxes"][keep].float().cpu().numpy(),
            scores=out["scores"][keep].float().cpu().numpy(),
            category_ids=ids,
            names=[self._names[i] for i in ids.tolist()],
            masks=None if masks is None else masks.cpu().numpy(),
            keypoints=self._keypoints(out, keep, ids),
        )

    def _keypoints(self, out: dict[str, torch.Tensor], keep: torch.Tensor,
                   category_ids: np.ndarray) -> list[np.ndarray | None] | None:
        """Each kept detection's K×3 ``(x, y, score)`` of its category's slice of the stacked keypoint channels."""
        channels = self.info.keypoint_channels
        if channels is None or "keypoints" not in out:
            return None
        stacked = keypoint_triplets(out, keep).numpy()
        return [None if channels.get(c) is None else stacked[i, channels[c]]
                for i, c in enumerate(category_ids.tolist())]
