"""Top-down keypoint estimation: heatmap networks (pose HRNet, SimpleBaseline heads on any backbone),
their training task and prediction from boxes.

Names are imported lazily from their modules, so ``densevision.pose.config`` loads without torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "model": ("build_pose_model", "load_pose_model"),
    "predict": ("predict_keypoints",),
    "train": ("train_pose",),
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
