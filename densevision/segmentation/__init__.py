"""Semantic segmentation: UperNet, Semantic FPN and HRNetV2 heads over any zoo or ``timm:`` backbone, label-map
training on the shared engine, whole-image and sliding-window prediction.

Names are imported lazily, so ``densevision.segmentation.config`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "config": ("SegmenterConfig", "SegTrainConfig"),
    "heads": ("FCNHead", "HRNetV2Head", "SemanticFPNHead", "UperNetHead", "adaptive_avg_pool2d", "build_head"),
    "model": ("Segmenter", "build_segmenter", "init_backbone_from", "load_segmenter", "segmenter_spec"),
    "predict": ("predict_folder", "predict_image", "slide_inference"),
    "train": ("SegTask", "train_segmenter"),
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
