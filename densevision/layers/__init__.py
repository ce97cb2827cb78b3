"""Building blocks shared by the model families."""

from densevision.layers.drop import DropPath, drop_path
from densevision.layers.mlp import Mlp

__all__ = ["DropPath", "Mlp", "drop_path"]
