"""Shared pieces of the multi-scale feature extractors returned by ``create_model(..., features_only=True)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from timm.models import FeatureInfo

from densevision.models.interface import TimmInterface


def resolve_out_indices(out_indices: Sequence[int] | None, num_levels: int) -> tuple[int, ...]:
    """Validate ``out_indices`` (default: every level), allowing negative indices like timm."""
    if out_indices is None:
        return tuple(range(num_levels))
    resolved = []
    for i in out_indices:
        j = i + num_levels if i < 0 else i
        if not 0 <= j < num_levels:
            raise ValueError(f"out_indices {tuple(out_indices)}: index {i} outside 0..{num_levels - 1}")
        resolved.append(j)
    return tuple(resolved)


class FeatureExtractor(TimmInterface):
    """Base class of dense backbones: ``forward(x: B×3×H×W) -> list[B×C_i×H_i×W_i]`` for any H, W.

    Subclasses set ``out_indices``, ``_all_channels``, ``_all_strides`` and ``_all_modules`` (one entry per
    level: the module whose output the level is read from) and implement ``forward``; ``out_channels`` /
    ``strides`` describe only the selected levels, so heads can be wired from them (the detectron2
    ``output_shape()`` idea). ``feature_info`` is timm's :class:`~timm.models.FeatureInfo`, as on timm's
    ``features_only`` models.
    """

    out_indices: tuple[int, ...]
    _all_channels: tuple[int, ...]
    _all_strides: tuple[int, ...]
    _all_modules: tuple[str, ...]

    @property
    def out_channels(self) -> list[int]:
        return [self._all_channels[i] for i in self.out_indices]

    @property
    def strides(self) -> list[int]:
        return [self._all_strides[i] for i in self.out_indices]

    @property
    def feature_info(self) -> FeatureInfo:
        """``channels()``, ``reduction()`` and ``module_name()`` of the selected levels."""
        levels = zip(self._all_channels, self._all_strides, self._all_modules, strict=True)
        info = [{"num_chs": c, "reduction": s, "module": m} for c, s, m in levels]
        return FeatureInfo(info, self.out_indices)

    def select(self, levels: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Keep the levels named by ``out_indices``."""
        return [levels[i] for i in self.out_indices]
