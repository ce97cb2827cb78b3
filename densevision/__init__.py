"""densevision: dense prediction toolkit (model zoo, Mask R-CNN, boundary patch refinement, COCO evaluation).

``create_model`` and ``list_models`` are imported from :mod:`densevision.models` on first use, so importing
``densevision`` (and starting the CLI) does not import torch.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]

_LAZY = {"create_model": "densevision.models", "list_models": "densevision.models"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'densevision' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
