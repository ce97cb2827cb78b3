"""densevision: dense prediction toolkit (model zoo, instance and semantic segmentation, pose estimation, boundary
patch refinement, COCO evaluation).

``create_model`` and ``list_models`` (:mod:`densevision.models`) and the one-image entries ``Detector``,
``Refiner``, ``Segmenter`` and ``PoseEstimator`` (:mod:`densevision.api`) are imported on first use, so importing
``densevision`` (and starting the CLI) does not import torch.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

__version__ = "0.1.0"

_names, __getattr__, __dir__ = lazy_exports(__name__, {
    "densevision.models": ("create_model", "list_models"),
    "densevision.api": ("Detector", "PoseEstimator", "Refiner", "Segmenter"),
})
__all__ = ["__version__", *_names]
