"""``densevision.Refiner``: Boundary Patch Refinement of one image's instance masks, in memory.

``Refiner.from_checkpoint(path)(image, masks)`` runs :func:`~densevision.refine.pipeline.refine_results` —
the code of ``densevision bpr refine`` — on the image and masks as given, without files: same patches,
network batches, merge and refinement rule (:class:`~densevision.refine.config.RefineRuleConfig`), so the
result equals ``bpr refine`` on the same image and masks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from densevision.api.inputs import ImageInput, as_boxes, as_image_array, as_masks, as_scores
from densevision.data.masks import decode_masks, encode_masks
from densevision.engine.device import resolve_device
from densevision.refine.config import RefineRuleConfig
from densevision.refine.network import RefineNet, load_refine_net
from densevision.refine.patches import DEFAULT_NMS_IOU
from densevision.refine.pipeline import refine_results
from densevision.refine.selection import check_rule

_IMAGE_ID = 1


@dataclass(frozen=True)
class Refinement:
    """Refined instances, in the order given.

    Attributes:
        masks: N×H×W bool refined masks (instances the rule leaves alone keep their coarse mask).
        boxes: N×4 float32 ``(x0, y0, x1, y1)``: the boxes given (the coarse masks' boxes where none were), or
            the refined masks' boxes under the rule ``boxes="from-mask"``.
    """

    masks: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        return len(self.masks)


class Refiner:
    """A trained BPR network that refines the instance masks of one image.

    Build it with :meth:`from_checkpoint`; ``refiner(image, masks, boxes, scores)`` takes the image as a path,
    a PIL image, an H×W×3 uint8 RGB array or a 3×H×W float tensor in [0, 1], and returns a :class:`Refinement`.

    Args:
        model: the refinement network.
        device: where patches, network and merge run.
        rule: what is refined and kept (default ``RefineRuleConfig()``: the rule ``bpr refine`` applies by
            default, recorded in the refiner's model card).
        nms_iou: patch proposal NMS threshold (``bpr refine --nms-iou``).
        batch_size: patches per network batch.
    """

    def __init__(self, model: RefineNet, *, device: str | torch.device = "cpu",
                 rule: RefineRuleConfig | None = None, nms_iou: float = DEFAULT_NMS_IOU,
                 batch_size: int = 64) -> None:
        self.rule = rule or RefineRuleConfig()
        check_rule(self.rule)
        self.device = resolve_device(device)
        self.model = model.to(self.device).eval()
        self.nms_iou = nms_iou
        self.batch_size = batch_size

    @classmethod
    def from_checkpoint(
        cls,
        path: str | os.PathLike,
        *,
        device: str | torch.device = "auto",
        rule: RefineRuleConfig | None = None,
        nms_iou: float = DEFAULT_NMS_IOU,
        batch_size: int = 64,
        trust_checkpoint: bool = False,
    ) -> Refiner:
        """Load a refiner as ``bpr refine`` does: a ``bpr train`` run directory (``best.pt``, else ``last.pt``),
        a checkpoint file (e.g. ``densevision/assets/demo_refiner.pt``) or an official BPR checkpoint; the
        other arguments are the class's."""
        model = load_refine_net(path, trust_checkpoint=trust_checkpoint)
        return cls(model, device=device, rule=rule, nms_iou=nms_iou, batch_size=batch_size)

    def __call__(self, image: ImageInput, masks: Any, boxes: Any = None, scores: Any = None) -> Refinement:
        """Refine the instance masks of ``image``.

        Args:
            image: the image the masks belong to.
            masks: N×H×W bool (or 0/1 integer) coarse masks, a numpy array or a tensor, at the image's size.
            boxes: N×4 ``(x0, y0, x1, y1)`` detection boxes, returned as they are under the rule's
                ``boxes="keep"`` (default: the coarse masks' boxes).
            scores: N detection scores: each instance's ``score`` in the results ``bpr refine`` would read
                (default 1).

        Returns:
            The :class:`Refinement` of the N instances, in their order.
        """
        array = as_image_array(image)
        height, width = array.shape[:2]
        coarse = as_masks(masks, height, width)
        n = len(coarse)
        given_scores = [1.0] * n if scores is None else as_scores(scores, n).tolist()
        results = [{"image_id": _IMAGE_ID, "category_id": 0, "score": score, "segmentation": rle}
                   for rle, score in zip(encode_masks(torch.from_numpy(coarse)), given_scores, strict=True)]
        if boxes is not None:
            xyxy = as_boxes(boxes, n)
            for result, box in zip(results, np.c_[xyxy[:, :2], xyxy[:, 2:] - xyxy[:, :2]].tolist(), strict=True):
                result["bbox"] = box
        entry = {"id": _IMAGE_ID, "file_name": "image", "height": height, "width": width}
        refined = refine_results([entry], ".", results, self.model, nms_iou=self.nms_iou, rule=self.rule,
                                 batch_size=self.batch_size, device=self.device, progress=False,
                                 image_loader=lambda _: array)
        xywh = np.array([r["bbox"] for r in refined], dtype=np.float64).reshape(n, 4)
        return Refinement(
            masks=decode_masks([r["segmentation"] for r in refined], height, width).numpy().copy(),
            boxes=np.c_[xywh[:, :2], xywh[:, :2] + xywh[:, 2:]].astype(np.float32),
        )
