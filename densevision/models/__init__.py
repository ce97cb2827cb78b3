"""The model zoo. Importing this package registers every family."""

from densevision.models.registry import create_model, list_models, model_family, register_model

__all__ = ["create_model", "list_models", "model_family", "register_model"]
