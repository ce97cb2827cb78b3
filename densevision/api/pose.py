"""``densevision.PoseEstimator``: a trained top-down keypoint network as a function of one image and boxes.

``PoseEstimator.from_checkpoint(path)(image, boxes)`` runs :func:`~densevision.pose.predict.predict_keypoints`
— the code of ``densevision pose predict`` — on the image as given (same crops, flip test, decoding and
rounding), so the keypoints equal ``pose predict``'s for the same image and boxes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from densevision.api.inputs import ImageInput, as_boxes, as_image_array, as_scores
from densevision.data.images import ImageRecord
from densevision.data.keypoints import KeypointCategory, KeypointLayout, PoseInstance
from densevision.engine.device import resolve_device
from densevision.errors import DenseVisionError
from densevision.pose.model import TopDownPose, load_pose_model
from densevision.pose.nms import oks_nms_results
from densevision.pose.predict import DECODERS, predict_keypoints


@dataclass(frozen=True)
class Poses:
    """The keypoints of N boxes of one category in one image, in the order of the boxes (those OKS-NMS kept, when
    asked for).

    Attributes:
        keypoints: N×K×3 float64 ``(x, y, score)`` in image pixels (score: the heatmap maximum).
        scores: N float64 instance scores: the box score times the mean of the keypoint scores above 0.2.
        boxes: N×4 float64 ``(x0, y0, x1, y1)``, the boxes given (those kept).
        category_id: the category of every box.
        keypoint_names: the K keypoint names of that category.
    """

    keypoints: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    category_id: int
    keypoint_names: list[str]

    def __len__(self) -> int:
        return len(self.keypoints)

    def to_coco(self, image_id: int) -> list[dict[str, Any]]:
        """COCO keypoint results of the image ``image_id`` (``bbox`` XYWH, flat ``keypoints``, ``score``) — the
        entries ``pose predict`` writes for these boxes."""
        xywh = np.c_[self.boxes[:, :2], self.boxes[:, 2:] - self.boxes[:, :2]]
        return [{"image_id": int(image_id), "category_id": self.category_id, "bbox": [round(v, 2) for v in box],
                 "keypoints": points.ravel().tolist(), "score": score}
                for box, points, score in zip(xywh.tolist(), self.keypoints, self.scores.tolist(), strict=True)]


class PoseEstimator:
    """A trained top-down pose network that maps one image and N boxes to their keypoints.

    Build it with :meth:`from_checkpoint`; ``estimator(image, boxes)`` takes the image as a path, a PIL image,
    an H×W×3 uint8 RGB array or a 3×H×W float tensor in [0, 1], and returns :class:`Poses`.

    Args:
        model: the network, on the device it runs on.
        layout: the categories with keypoints it was trained on (its checkpoint's model spec).
        flip_test: average with the mirrored crop's heatmaps (``pose predict`` without ``--no-flip-test``).
        decode: heatmap decoding, ``"quarter"`` (the official quarter-pixel rule) or ``"dark"``.
        unbiased: the network was trained on unbiased targets (the flip test's mirror shift is then 0.75 px).
        batch_size: crops per forward pass.
    """

    def __init__(self, model: TopDownPose, layout: KeypointLayout, *, flip_test: bool = True,
                 decode: str = "quarter", unbiased: bool = False, batch_size: int = 32) -> None:
        if decode not in DECODERS:
            raise DenseVisionError(f"decode must be one of {', '.join(DECODERS)}, got {decode!r}")
        self.model = model.eval()
        self.layout = layout
        self.flip_test = flip_test
        self.decode = decode
        self.unbiased = unbiased
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        flip_test: bool = True,
        decode: str | None = None,
        batch_size: int = 32,
        trust_checkpoint: bool = False,
    ) -> PoseEstimator:
        """Load a pose network as ``pose predict`` does: a ``pose train`` run directory (``best.pt``, else
        ``last.pt``) or a checkpoint file; ``device`` ``"auto"`` is CUDA when available; ``decode`` defaults
        to the checkpoint's decoding and ``unbiased`` is the checkpoint's; the other arguments are the class's."""
        model, meta = load_pose_model(path, trust_checkpoint=trust_checkpoint)
        layout = KeypointLayout(meta["categories"], f"{path} (model spec)")
        return cls(model.to(resolve_device(device)), layout, flip_test=flip_test,
                   decode=decode or meta.get("decode", "quarter"), unbiased=meta.get("unbiased", False),
                   batch_size=batch_size)

    @property
    def categories(self) -> list[dict[str, Any]]:
        """The categories with keypoints (``id``, ``name``, ``keypoints``, ``flip_pairs``, ``kpt_sigmas``)."""
        return self.layout.to_meta()

    def _category(self, category_id: int | None) -> KeypointCategory:
        known = ", ".join(f"{c.id} ({c.name})" for c in self.layout.categories.values())
        if category_id is None:
            if len(self.layout.categories) > 1:
                raise DenseVisionError(f"the network knows several categories ({known}); give category_id")
            return next(iter(self.layout.categories.values()))
        category = self.layout.categories.get(category_id)
        if category is None:
            raise DenseVisionError(f"category_id {category_id} is not one of the network's categories ({known})")
        return category

    def __call__(self, image: ImageInput, boxes: Any, scores: Any = None, *,
                 category_id: int | None = None, oks_nms: float = 0.0) -> Poses:
        """The keypoints of ``image`` in each box.

        Args:
            image: the image the boxes belong to.
            boxes: N×4 ``(x0, y0, x1, y1)`` boxes in image pixels (array, tensor or nested list).
            scores: N box scores (default 1), multiplied into the instance scores.
            category_id: the category of the boxes (default: the network's only category).
            oks_nms: drop a pose whose OKS with a higher-scored one is above this (``pose predict --oks-nms``,
                0.9 there; a category without OKS sigmas keeps all); 0, the default, keeps one pose per box.
        """
        if not 0.0 <= oks_nms <= 1.0:
            raise DenseVisionError(f"oks_nms must be in [0, 1], got {oks_nms}")
        category = self._category(category_id)
        array = as_image_array(image)
        xyxy = as_boxes(boxes)
        box_scores = np.ones(len(xyxy)) if scores is None else as_scores(scores, len(xyxy))
        record = ImageRecord(0, Path("image"), "image", *array.shape[:2])
        zeros = np.zeros((len(category.keypoints), 3))
        instances = [PoseInstance(record, category.id, (x0, y0, x1 - x0, y1 - y0), zeros, score)
                     for (x0, y0, x1, y1), score in zip(xyxy.tolist(), box_scores.tolist(), strict=True)]
        device = next(self.model.parameters()).device
        results = predict_keypoints(self.model, instances, self.layout, batch_size=self.batch_size, device=device,
                                    flip_test=self.flip_test, decode=self.decode, unbiased=self.unbiased,
                                    image_loader=lambda _: array)
        if oks_nms > 0:
            kept = {id(r) for r in oks_nms_results(results, self.layout, oks_nms, aspect=self.model.input_size[1]
                                                   / self.model.input_size[0])}
            xyxy = xyxy[[i for i, r in enumerate(results) if id(r) in kept]]
            results = [r for r in results if id(r) in kept]
        keypoints = np.array([r["keypoints"] for r in results], dtype=np.float64)
        return Poses(keypoints=keypoints.reshape(len(results), len(category.keypoints), 3),
                     scores=np.array([r["score"] for r in results], dtype=np.float64), boxes=xyxy,
                     category_id=category.id, keypoint_names=list(category.keypoints))
