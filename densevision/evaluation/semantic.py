"""Semantic segmentation metrics with mmsegmentation's definitions, accumulated over a data set.

Per image the pixels whose label is ``ignore_index`` are dropped; a (K+1)×(K+1) confusion matrix (rows:
labels, columns: predictions; the extra column collects predictions that are no class) is summed over the
data set with torchmetrics' ``multiclass_confusion_matrix``. From it, per class c: intersection I_c (the
diagonal), label area L_c (row sum), predicted area P_c (column sum);

    IoU_c = I_c / (P_c + L_c − I_c),  Acc_c = I_c / L_c,  aAcc = ΣI / ΣL,

in percent. A class absent from both labels and predictions has IoU ``None``; a class absent from the labels
has Acc ``None``; a predicted class absent from the labels has IoU 0. mIoU and mAcc are the means over the
classes that are not ``None`` (mmsegmentation's nan-means; torchmetrics' ``MulticlassJaccardIndex`` gives the
same IoUs, ``torchmetrics.segmentation.MeanIoU`` does not: it averages per image and has no ignore index).

Boundary IoU per class (with ``boundary_ratio``): Boundary IoU (:mod:`densevision.evaluation.boundary`) of each
class's binary label and prediction maps, band width d = ratio × image diagonal, over the labelled pixels,
intersections and unions of the bands summed over the data set like the confusion matrix; ``boundary_mIoU`` is
their mean over the classes whose bands are not both empty.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import multiclass_confusion_matrix

from densevision.evaluation.boundary import mask_to_boundary

IGNORE_INDEX = 255


class SemanticEvaluator:
    """A :class:`~densevision.engine.DatasetEvaluator` of label maps.

    ``process(inputs, outputs)``: ``inputs`` is a batch ``(images, labels: B×H×W)``, ``outputs`` the model's
    ``B×K×H×W`` logits or ``B×H×W`` label maps. :meth:`update` takes one prediction / label pair directly.
    ``evaluate()`` -> ``{"aAcc", "mIoU", "mAcc"}``; :meth:`results` adds ``per_class`` (and with
    ``boundary_ratio`` each class's ``BoundaryIoU`` and ``boundary_mIoU``).
    """

    def __init__(self, classes: Sequence[str], *, ignore_index: int = IGNORE_INDEX,
                 boundary_ratio: float | None = None) -> None:
        self.classes = list(classes)
        self.ignore_index = ignore_index
        self.boundary_ratio = boundary_ratio
        self.reset()

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def reset(self) -> None:
        k = self.num_classes
        self.confusion = torch.zeros(k + 1, k + 1, dtype=torch.int64)
        self.band_inter = np.zeros(k, np.int64)
        self.band_union = np.zeros(k, np.int64)

    def update(self, pred: torch.Tensor, label: torch.Tensor) -> None:
        """Add one ``H×W`` (or batched ``B×H×W``) prediction and label; predictions outside 0..K−1 count in no
        class's predicted area, labels must be classes or ``ignore_index``."""
        if pred.shape != label.shape:
            raise ValueError(f"prediction {tuple(pred.shape)} and label {tuple(label.shape)} differ in shape")
        k = self.num_classes
        pred, label = pred.long().cpu(), label.long().cpu()
        pred = torch.where((pred >= 0) & (pred < k), pred, k)
        label = torch.where(label == self.ignore_index, -1, label)
        if bool(((label >= k) | (label < -1)).any()):
            raise ValueError(f"labels hold values outside the {k} classes and ignore {self.ignore_index}")
        self.confusion += multiclass_confusion_matrix(pred.flatten(), label.flatten(), k + 1, ignore_index=-1,
                                                      validate_args=False)
        if self.boundary_ratio is not None:
            for p, t in zip(pred.reshape(-1, *pred.shape[-2:]).numpy(), label.reshape(-1, *label.shape[-2:]).numpy(),
                            strict=True):
                self._add_bands(p, t)

    def _add_bands(self, pred: np.ndarray, label: np.ndarray) -> None:
        """Add one ``H×W`` pair's per-class band intersections and unions (labelled pixels only)."""
        labelled = label >= 0
        for c in np.union1d(np.unique(pred[labelled]), np.unique(label[labelled])):
            if c >= self.num_classes:
                continue
            gt_band = mask_to_boundary(label == c, self.boundary_ratio).astype(bool) & labelled
            dt_band = mask_to_boundary(pred == c, self.boundary_ratio).astype(bool) & labelled
            self.band_inter[c] += int((gt_band & dt_band).sum())
            self.band_union[c] += int((gt_band | dt_band).sum())

    def process(self, inputs: Any, outputs: torch.Tensor) -> None:
        labels = inputs[1]
        preds = outputs.argmax(1) if outputs.dim() == labels.dim() + 1 else outputs
        self.update(preds, labels)

    def results(self) -> dict[str, Any]:
        """``{"aAcc", "mIoU", "mAcc", "per_class": {name: {"IoU", "Acc"}}}`` in percent (None: undefined); with
        ``boundary_ratio`` also ``"boundary_mIoU"`` and each class's ``"BoundaryIoU"``."""
        k = self.num_classes
        cm = self.confusion.double()
        inter = cm.diagonal()[:k]
        label_area = cm[:k].sum(1)
        pred_area = cm[:, :k].sum(0)
        union = pred_area + label_area - inter
        iou = [None if u == 0 else float(100 * i / u) for i, u in zip(inter, union, strict=True)]
        acc = [None if a == 0 else float(100 * i / a) for i, a in zip(inter, label_area, strict=True)]
        total = float(label_area.sum())

        def mean(values: list[float | None]) -> float | None:
            kept = [v for v in values if v is not None]
            return sum(kept) / len(kept) if kept else None

        out = {
            "aAcc": float(100 * inter.sum() / total) if total else None,
            "mIoU": mean(iou),
            "mAcc": mean(acc),
            "per_class": {name: {"IoU": i, "Acc": a} for name, i, a in zip(self.classes, iou, acc, strict=True)},
        }
        if self.boundary_ratio is not None:
            biou = [None if u == 0 else float(100 * i / u) for i, u in zip(self.band_inter, self.band_union,
                                                                           strict=True)]
            out["boundary_mIoU"] = mean(biou)
            for name, value in zip(self.classes, biou, strict=True):
                out["per_class"][name]["BoundaryIoU"] = value
        return out

    def evaluate(self) -> dict[str, float]:
        out = self.results()
        return {key: out[key] for key in ("mIoU", "aAcc", "mAcc") if out[key] is not None}


def format_table(results: dict[str, Any]) -> str:
    """The per-class table of :meth:`SemanticEvaluator.results` (with a Boundary IoU column when present) and the
    summary line, as text."""
    width = max([5, *(len(n) for n in results["per_class"])])

    def cell(value: float | None) -> str:
        return "   n/a" if value is None else f"{value:6.2f}"

    boundary = "boundary_mIoU" in results
    lines = [f"{'class':<{width}}    IoU    Acc" + ("   BIoU" if boundary else "")]
    lines += [f"{name:<{width}} {cell(m['IoU'])} {cell(m['Acc'])}" + (f" {cell(m['BoundaryIoU'])}" if boundary else "")
              for name, m in results["per_class"].items()]
    summary = f"aAcc {cell(results['aAcc'])}  mIoU {cell(results['mIoU'])}  mAcc {cell(results['mAcc'])}"
    lines.append(summary + (f"  boundary mIoU {cell(results['boundary_mIoU'])}" if boundary else ""))
    return "\n".join(lines)
