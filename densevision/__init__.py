"""densevision: dense prediction toolkit (model zoo, Mask R-CNN, boundary patch refinement, COCO evaluation)."""

from densevision.models import create_model, list_models

__version__ = "0.1.0"

__all__ = ["__version__", "create_model", "list_models"]
