"""The model zoo. Importing this package registers every family."""

from densevision.models import asmlp, cyclemlp, hrnet, pose_hrnet, swin, vit  # noqa: F401
from densevision.models.registry import create_model, list_models, model_family, register_model

__all__ = ["create_model", "list_models", "model_family", "register_model"]
