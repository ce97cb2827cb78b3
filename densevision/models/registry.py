"""The model zoo registry: ``register_model``, ``create_model``, ``list_models``.

Each family module registers one function per variant and lists each variant's default ``pretrained_cfg`` in its
``default_cfgs`` (timm's layout). A variant function takes keyword arguments only (``num_classes``,
``features_only``, ``out_indices`` and architecture overrides) and returns either the classification model or its
multi-scale feature extractor. ``create_model`` adds weights: a checkpoint file, or the released ones.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
import sys
from collections.abc import Callable, Sequence

from torch import nn

from densevision.errors import DenseVisionError
from densevision.models.checkpoint import load_pretrained

_MODELS: dict[str, Callable[..., nn.Module]] = {}
_FAMILIES: dict[str, str] = {}
_KINDS: dict[str, str] = {}
BACKBONE = "backbone"


def register_model(fn: Callable[..., nn.Module] | None = None, *, join_timm: bool = False, kind: str = BACKBONE):
    """Register a variant function under its ``__name__``.

    With ``join_timm=True`` the variant is also added to timm's own registry (for architectures timm lacks),
    so ``timm.create_model(name, features_only=True)`` works after ``import densevision``. ``kind`` is
    ``"backbone"`` (classifier + ``features_only`` extractor, the default) or a task's name for a complete task
    network (``"pose"``) that takes its own arguments instead of ``num_classes``.
    """

    def decorate(f: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        name = f.__name__
        if name in _MODELS:
            raise ValueError(f"model {name!r} registered twice")
        _MODELS[name] = f
        _FAMILIES[name] = f.__module__.rsplit(".", 1)[-1]
        _KINDS[name] = kind
        if join_timm:
            _join_timm_registry(name, f)
        return f

    return decorate(fn) if fn is not None else decorate


def _join_timm_registry(name: str, fn: Callable[..., nn.Module]) -> None:
    import timm.models

    if timm.models.is_model(name):
        return

    def timm_entry(pretrained: bool = False, pretrained_cfg=None, pretrained_cfg_overlay=None, cache_dir=None,
                   **kwargs) -> nn.Module:
        model = fn(**kwargs)
        if pretrained:
            load_released_weights(model, name)
        return model

    timm_entry.__name__ = name
    timm_entry.__qualname__ = name
    timm_entry.__module__ = fn.__module__
    timm.models.register_model(timm_entry)


# Arguments of the classifier's head that a feature extractor has no use for (timm passes them to both).
HEAD_ARGS = ("global_pool", "drop_rate")


def features_kwargs(features: Callable[..., nn.Module], kwargs: dict) -> dict:
    """``kwargs`` without the head arguments (:data:`HEAD_ARGS`) that ``features`` does not take."""
    accepted = inspect.signature(features).parameters
    return {k: v for k, v in kwargs.items() if k not in HEAD_ARGS or k in accepted}


def build_variant(
    classifier: Callable[..., nn.Module],
    features: Callable[..., nn.Module],
    cfg: dict,
    pretrained_cfg: Callable[[int], dict],
    *,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
) -> nn.Module:
    """The classifier (``num_classes`` outputs) or the feature extractor of one variant, built from ``cfg``,
    with ``pretrained_cfg(num_classes)`` attached (0 classes for the feature extractor)."""
    if features_only:
        model = features(out_indices=out_indices, **features_kwargs(features, cfg))
    else:
        model = classifier(num_classes=num_classes, **cfg)
    model.pretrained_cfg = pretrained_cfg(0 if features_only else num_classes)
    return model


def list_models(pattern: str | None = None, *, kind: str | None = BACKBONE) -> list[str]:
    """Sorted names of registered models of ``kind`` (None: every kind), optionally filtered by a shell-style
    pattern (``"swin*"``)."""
    _import_families()
    names = sorted(n for n in _MODELS if kind is None or _KINDS[n] == kind)
    if pattern:
        glob = pattern if any(c in pattern for c in "*?[") else f"*{pattern}*"
        names = [n for n in names if fnmatch.fnmatch(n, glob)]
    return names


def get_pretrained_cfg(name: str) -> dict:
    """The ``pretrained_cfg`` of a registered variant's released weights (its family's ``default_cfgs`` entry),
    without building the model."""
    fn = _lookup(name)
    return dict(sys.modules[fn.__module__].default_cfgs[name])


def model_family(name: str) -> str:
    """The family (module) name of a registered model, e.g. ``"swin"``."""
    _lookup(name)
    return _FAMILIES[name]


def _lookup(name: str) -> Callable[..., nn.Module]:
    _import_families()
    if name not in _MODELS:
        close = difflib.get_close_matches(name, list(_MODELS), n=5, cutoff=0.5)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise DenseVisionError(f"unknown model {name!r}{hint} (see `densevision models`)")
    return _MODELS[name]


def create_model(
    name: str,
    *,
    pretrained: bool | str | os.PathLike | None = None,
    num_classes: int = 1000,
    features_only: bool = False,
    out_indices: Sequence[int] | None = None,
    trust_checkpoint: bool = False,
    **kwargs,
) -> nn.Module:
    """Build a zoo model by name.

    Args:
        name: a registered name (timm's name where timm has the same architecture).
        pretrained: True for the released weights its ``pretrained_cfg`` names (downloaded once into the cache; a
            classifier for another number of classes keeps its new head), or the path of a checkpoint (official,
            timm or densevision format; detected automatically); None / False: random initialisation.
        num_classes: classifier outputs (ignored with ``features_only``).
        features_only: return a feature extractor whose forward gives a list of NCHW maps (any H, W).
        out_indices: which feature levels to return (default: all four, strides 4/8/16/32).
        trust_checkpoint: allow checkpoints that need full unpickling.
        **kwargs: timm's common arguments (``in_chans``, ``drop_rate``, ``drop_path_rate``, ``global_pool``) and
            architecture overrides passed to the model class; task networks take their own (``num_joints`` of a
            pose network) and ignore ``num_classes``.
    """
    fn = _lookup(name)
    if _KINDS[name] != BACKBONE:
        model = fn(features_only=features_only, **kwargs)
    elif features_only:
        model = fn(features_only=True, out_indices=out_indices, **kwargs)
    else:
        model = fn(num_classes=num_classes, **kwargs)
    if pretrained is True:
        load_released_weights(model, name, trust_checkpoint=trust_checkpoint)
    elif pretrained is not None and pretrained is not False:
        load_pretrained(model, pretrained, trust_checkpoint=trust_checkpoint)
    return model


def load_released_weights(model: nn.Module, name: str, *, trust_checkpoint: bool = False) -> nn.Module:
    """Load the weights ``model.pretrained_cfg`` names (cached, else downloaded), keeping the model's own classifier
    where the weights' one does not fit (another number of classes)."""
    from densevision.models.pretrained import fetch_weights

    path = fetch_weights(getattr(model, "pretrained_cfg", None) or {}, name)
    return load_pretrained(model, path, trust_checkpoint=trust_checkpoint, new_classifier=True)


def _import_families() -> None:
    """Import the family modules so their ``@register_model`` decorators run."""
    import densevision.models  # noqa: F401
