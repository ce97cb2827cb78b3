"""Building blocks shared by the model families."""

from densevision.layers.activation import InplaceGELU
from densevision.layers.attention import (
    AdditiveAttention,
    LuongAttention,
    MultiHeadAttention,
    WindowAttention,
    scaled_dot_product,
)
from densevision.layers.drop import DropPath, drop_path
from densevision.layers.mlp import Mlp, mlp_forward
from densevision.layers.shift import CycleFC, axial_shift, cycle_fc_offsets, shift_channel_groups

__all__ = [
    "AdditiveAttention",
    "LuongAttention",
    "MultiHeadAttention",
    "WindowAttention",
    "scaled_dot_product",
    "CycleFC",
    "DropPath",
    "InplaceGELU",
    "Mlp",
    "axial_shift",
    "cycle_fc_offsets",
    "drop_path",
    "mlp_forward",
    "shift_channel_groups",
]
