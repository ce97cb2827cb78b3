"""Feature extractors ("bodies") by name, shared by every dense task: a zoo model's ``features_only`` form or
``"timm:<model>"`` (a timm ``features_only`` model seen as a zoo body), and a build-time check of the shapes a
body declares.

A body: ``forward(B×3×H×W) -> list[B×C_i×H_i×W_i]`` with ``out_channels`` and ``strides`` (one per level).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Any

import torch
from torch import nn

from densevision.errors import DenseVisionError
from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint, unwrap_state_dict
from densevision.models.registry import create_model

TIMM_PREFIX = "timm:"


class TimmFeatures(nn.Module):
    """A timm ``features_only`` model seen as a densevision body: last four levels, always NCHW.

    ``forward(B×3×H×W) -> list[B×C_i×H_i×W_i]``; ``out_channels``, ``strides``, ``pretrained_cfg`` as zoo
    bodies have them.
    """

    def __init__(self, model_name: str, **kwargs: Any) -> None:
        super().__init__()
        import timm

        if not timm.is_model(model_name):
            raise DenseVisionError(f"unknown timm model {model_name!r} (see timm.list_models())")
        try:
            self.model = timm.create_model(
                model_name, pretrained=False, features_only=True, out_indices=(-4, -3, -2, -1), **kwargs
            )
        except (RuntimeError, ValueError, TypeError, AssertionError) as exc:
            raise DenseVisionError(
                f"timm model {model_name!r} cannot be a backbone: {exc}"
            ) from None
        self.channels_last = str(getattr(self.model, "output_fmt", "NCHW")).endswith("NHWC")
        self.out_channels = list(self.model.feature_info.channels())
        self.strides = list(self.model.feature_info.reduction())
        self.pretrained_cfg = dict(getattr(self.model, "pretrained_cfg", None) or {})
        self.level_modules = list(self.model.feature_info.module_name())

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        feats = self.model(x)
        if self.channels_last:
            feats = [f.permute(0, 3, 1, 2).contiguous() for f in feats]
        return list(feats)

    def stage_parameters(self) -> list[list[nn.Parameter]]:
        """Parameters grouped as ``[stem, stage 1, ..., stage 4]`` (see :func:`split_stages`)."""
        return split_stages(self.model.named_parameters(), self.level_modules)

    def load_weights(self, path: str | os.PathLike, *, trust_checkpoint: bool = False) -> None:
        """Load a timm classification checkpoint, dropping the keys of modules ``features_only`` removed."""
        state = unwrap_state_dict(read_checkpoint(path, trust_checkpoint=trust_checkpoint))
        own = self.model.state_dict()
        prefixes = {k.split(".", 1)[0] for k in own}
        state = {k: v for k, v in state.items() if k.split(".", 1)[0] in prefixes}
        load_state_dict_checked(self.model, state, str(path))


def split_stages(
    named_parameters: Iterable[tuple[str, nn.Parameter]], level_modules: Sequence[str]
) -> list[list[nn.Parameter]]:
    """Group parameters (in registration = execution order) as ``[stem, stage 1, ..., stage n]``.

    ``level_modules[i]`` names the module whose output is feature level ``i`` (timm ``feature_info`` module
    names; ``layers.0`` also matches timm's flattened ``layers_0``). Stage ``i + 1`` holds everything after level
    ``i - 1``'s module up to the end of level ``i``'s; the stem is everything before level 0's module; trailing
    parameters join the last stage.
    """
    prefixes = [(m + ".", m.replace(".", "_") + ".") for m in level_modules]
    groups: list[list[nn.Parameter]] = [[] for _ in range(len(level_modules) + 1)]
    level, inside = 0, False
    for name, param in named_parameters:
        while level < len(prefixes) - 1 and inside and not name.startswith(prefixes[level]):
            level, inside = level + 1, False
        inside = inside or name.startswith(prefixes[level])
        groups[level + 1 if inside or level > 0 else 0].append(param)
    return groups


def build_body(
    name: str,
    *,
    weights: str | os.PathLike | None = None,
    trust_checkpoint: bool = False,
    **kwargs: Any,
) -> nn.Module:
    """The feature extractor for ``name``: a zoo model, or ``"timm:<model>"`` (a timm ``features_only`` model).

    ``weights`` is a checkpoint path (zoo: official / timm / densevision formats through
    ``densevision.models.checkpoint``; timm: a timm classification state dict). ``kwargs`` go to the model.
    """
    if name.startswith(TIMM_PREFIX):
        body = TimmFeatures(name[len(TIMM_PREFIX):], **kwargs)
        if weights is not None:
            body.load_weights(weights, trust_checkpoint=trust_checkpoint)
        return body
    try:
        return create_model(name, features_only=True, pretrained=weights, trust_checkpoint=trust_checkpoint, **kwargs)
    except TypeError as exc:
        raise DenseVisionError(f"backbone {name!r} does not accept the arguments {sorted(kwargs)}: {exc}") from None


def check_body(body: nn.Module, name: str) -> None:
    """Run one small odd-sized image through ``body``; check the maps match its declared channels and strides.

    Catches bodies that need a fixed input size or declare wrong shapes, at build time with a one-line error.
    """
    top = max(body.strides)
    h, w = 2 * top + 8, 3 * top + 24
    was_training = body.training
    body.eval()
    try:
        with torch.no_grad():
            feats = body(torch.zeros(1, 3, h, w))
    except (RuntimeError, ValueError, AssertionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DenseVisionError(f"backbone {name!r} cannot run on a {w}x{h} image ({first})") from None
    finally:
        body.train(was_training)
    if len(feats) != len(body.out_channels):
        raise DenseVisionError(
            f"backbone {name!r} returned {len(feats)} maps but declares {len(body.out_channels)}"
        )
    for f, c, s in zip(feats, body.out_channels, body.strides, strict=True):
        expect = (-(-h // s), -(-w // s))
        if f.shape[1] != c or abs(f.shape[2] - expect[0]) > 1 or abs(f.shape[3] - expect[1]) > 1:
            raise DenseVisionError(
                f"backbone {name!r}: a stride-{s} map has shape {tuple(f.shape[1:])}, "
                f"expected about {(c, *expect)}"
            )
