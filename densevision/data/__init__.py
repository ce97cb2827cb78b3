"""Data: the mask codec, image records and reading, COCO validation and datasets, results files, joint
transforms, the synthetic shapes data set."""

from densevision.data.coco import CocoDetection, check_coco, load_coco, validate_coco
from densevision.data.images import (
    ImageDataset,
    ImageRecord,
    read_image,
    records_from_coco,
    records_from_folder,
    safe_image_path,
)
from densevision.data.jsonio import read_json
from densevision.data.loader import OneLineErrorLoader
from densevision.data.masks import annotation_to_mask, decode_masks, encode_masks, segmentation_problem, to_rle
from densevision.data.results import load_results, write_results
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
    "ImageDataset",
    "ImageRecord",
    "OneLineErrorLoader",
    "PhotometricJitter",
    "RandomHorizontalFlip",
    "ResizeShortest",
    "annotation_to_mask",
    "check_coco",
    "decode_masks",
    "detection_collate",
    "encode_masks",
    "generate_synthetic",
    "load_coco",
    "load_results",
    "read_image",
    "read_json",
    "records_from_coco",
    "records_from_folder",
    "safe_image_path",
    "segmentation_problem",
    "to_rle",
    "validate_coco",
    "write_results",
]
