"""Optional dependencies, installed with pip extras (``pip install "densevision[plots]"``): a missing one is named
in one line together with the extra that brings it."""

from __future__ import annotations

import importlib
from types import ModuleType

from densevision.errors import DenseVisionError

# The extra of pyproject.toml that installs each optional top-level package.
EXTRAS = {"matplotlib": "plots", "tensorboard": "tensorboard", "onnx": "onnx", "onnxruntime": "onnx"}


class MissingExtraError(DenseVisionError):
    """An optional package is not installed; the message names the extra that installs it."""


def missing_message(package: str, purpose: str) -> str:
    """``'{purpose} needs {package}, which is not installed: pip install "densevision[{extra}]"'``."""
    return f'{purpose} needs {package}, which is not installed: pip install "densevision[{EXTRAS[package]}]"'


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module`` (its top-level package is one of :data:`EXTRAS`); raise :class:`MissingExtraError`
    naming the extra when it cannot be imported."""
    package = module.partition(".")[0]
    try:
        importlib.import_module(package)
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtraError(missing_message(package, purpose)) from exc
