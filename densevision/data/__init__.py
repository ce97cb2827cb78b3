"""Data: COCO reading and validation, joint transforms, the synthetic shapes data set."""

from densevision.data.coco import CocoDetection, load_coco, read_image, validate_coco
from densevision.data.synthetic import generate as generate_synthetic
from densevision.data.transforms import (
    Compose,
    PhotometricJitter,
    RandomHorizontalFlip,
    ResizeShortest,
    detection_collate,
)

__all__ = [
    "CocoDetection",
    "Compose",
    "PhotometricJitter",
    "RandomHorizontalFlip",
    "ResizeShortest",
    "detection_collate",
    "generate_synthetic",
    "load_coco",
    "read_image",
    "validate_coco",
]
