"""COCO evaluation: bbox / segm AP (pycocotools) and Boundary AP behind one evaluator protocol."""

from densevision.evaluation.boundary import BoundaryCOCOeval, boundary_iou, mask_to_boundary
from densevision.evaluation.coco import IOU_TYPES, METRIC_NAMES, CocoEvaluator, evaluate, format_table

__all__ = [
    "IOU_TYPES",
    "METRIC_NAMES",
    "BoundaryCOCOeval",
    "CocoEvaluator",
    "boundary_iou",
    "evaluate",
    "format_table",
    "mask_to_boundary",
]
