"""Reading checkpoint files safely and loading them into zoo models with clear mismatch reports."""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping

import torch
from torch import nn

from densevision.errors import CheckpointError

_WRAPPER_KEYS = ("model", "state_dict", "model_state", "module")


def read_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> dict:
    """Load a checkpoint file on the CPU.

    Uses ``torch.load(weights_only=True)``; files that need full unpickling (training checkpoints holding
    ``argparse.Namespace`` or yacs configs) are refused unless ``trust_checkpoint=True``.
    """
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"{path}: this checkpoint holds non-tensor objects and needs full unpickling ({first}); "
            "load it only if you trust its source, with trust_checkpoint=True (CLI: --trust-checkpoint)"
        ) from None
    except (RuntimeError, EOFError, OSError) as exc:
        raise CheckpointError(f"{path}: not a readable PyTorch checkpoint ({exc})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)


def unwrap_state_dict(obj: Mapping) -> dict[str, torch.Tensor]:
    """Return the tensor dict inside common wrappers (``{'model': ...}``, ``{'state_dict': ...}``), without a
    ``module.`` (DataParallel/DDP) prefix."""
    for key in _WRAPPER_KEYS:
        inner = obj.get(key)
        if isinstance(inner, Mapping) and any(isinstance(v, torch.Tensor) for v in inner.values()):
            obj = inner
            break
    state = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def load_state_dict_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], source: str) -> None:
    """``load_state_dict(strict=True)`` that reports every missing, unexpected and mis-shaped key in one error.

    Non-persistent buffers are never expected in ``state_dict``.
    """
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    shapes = sorted(
        f"{k}: checkpoint {tuple(state_dict[k].shape)} vs model {tuple(own[k].shape)}"
        for k in set(own) & set(state_dict)
        if own[k].shape != state_dict[k].shape
    )
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)):
            if keys:
                shown = ", ".join(keys[:12]) + (f", ... ({len(keys)} in all)" if len(keys) > 12 else "")
                parts.append(f"{label}: {shown}")
        raise CheckpointError(f"{source}: checkpoint does not match {type(model).__name__}; " + "; ".join(parts))
    model.load_state_dict(state_dict, strict=True)


def load_pretrained(model: nn.Module, path: str | os.PathLike, *, trust_checkpoint: bool = False) -> nn.Module:
    """Load ``path`` into a zoo ``model``, converting upstream formats with the model's
    ``convert_state_dict(state_dict) -> state_dict`` when it defines one."""
    state = unwrap_state_dict(read_checkpoint(path, trust_checkpoint=trust_checkpoint))
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None:
        state = convert(state)
    load_state_dict_checked(model, state, str(path))
    return model
