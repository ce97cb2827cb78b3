"""Boundary patch refinement (BPR): boundary patches of instance masks, the HRNet refinement network, training
data, training and end-to-end refinement of COCO results."""

from densevision.refine.dataset import PatchDataset, build_patch_dataset, match_detections
from densevision.refine.merge import merge_patches
from densevision.refine.network import RefineNet, build_refine_net, load_refine_net
from densevision.refine.patches import (
    boundary_map,
    boundary_scores,
    crop_patches,
    decode_masks,
    propose_patches,
)
from densevision.refine.pipeline import refine_results
from densevision.refine.train import patch_miou, train_refiner

__all__ = [
    "PatchDataset",
    "RefineNet",
    "boundary_map",
    "boundary_scores",
    "build_patch_dataset",
    "build_refine_net",
    "crop_patches",
    "decode_masks",
    "load_refine_net",
    "match_detections",
    "merge_patches",
    "patch_miou",
    "propose_patches",
    "refine_results",
    "train_refiner",
]
