"""Boundary patch refinement (BPR): boundary patches of instance masks, the HRNet refinement network, training
data, training and end-to-end refinement of COCO results.

Names are imported lazily, so ``densevision.refine.config`` loads without torch.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

_EXPORTS = {
    "config": ("RefineNetConfig", "RefineTrainConfig"),
    "dataset": ("PatchDataset", "build_patch_dataset", "match_detections"),
    "merge": ("merge_patches",),
    "network": ("RefineNet", "build_refine_net", "load_refine_net"),
    "patches": ("boundary_map", "boundary_scores", "crop_patches", "decode_masks", "propose_patches"),
    "pipeline": ("refine_results",),
    "train": ("RefineTask", "patch_miou", "train_refiner"),
    "upper_bound": ("boundary_band", "match_greedy", "restore_band", "upper_bound_results"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
