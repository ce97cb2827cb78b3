"""Boundary patch refinement (BPR): boundary patches of instance masks, the HRNet refinement network, training
data, training and end-to-end refinement of COCO results.

Names are imported lazily, so ``densevision.refine.config`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

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
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE_OF)


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
