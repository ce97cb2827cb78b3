"""Reading checkpoint files safely and loading them into zoo models with clear mismatch reports."""

from __future__ import annotations

import os
import pickle
import re
import warnings
from collections.abc import Mapping

import torch
from torch import nn

from densevision.errors import CheckpointError, UntrustedCheckpointError

_WRAPPER_KEYS = ("model", "state_dict", "model_state", "module")


def read_checkpoint(path: str | os.PathLike, *, trust_checkpoint: bool = False) -> dict:
    """Load a checkpoint file on the CPU.

    Uses ``torch.load(weights_only=True)``; files that need full unpickling (training checkpoints holding
    ``argparse.Namespace`` or yacs configs) are refused unless ``trust_checkpoint=True``. A safetensors file (the
    Hugging Face Hub's format) is read as its dict of tensors.
    """
    if os.path.isdir(path):
        raise CheckpointError(f"{path}: is a folder, not a checkpoint file")
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: checkpoint file not found")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: not a PyTorch checkpoint (the file is empty)")
    if _is_safetensors(path):
        return _read_safetensors(path)
    try:
        with warnings.catch_warnings():  # the refusal below says what matters; torch's pickle-protocol notes don't
            warnings.filterwarnings("ignore", message=".*pickle protocol", category=UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=not trust_checkpoint)
    except pickle.UnpicklingError as exc:
        if not trust_checkpoint and _is_torch_file(path) and "Unsupported global" in str(exc):
            raise UntrustedCheckpointError(str(path), _unpickler_reason(exc)) from None
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_load_failure(path, exc)})") from None
    except OSError as exc:
        raise CheckpointError(f"{path}: cannot read ({exc.strerror or _first_line(exc)})") from None
    except Exception as exc:  # torch.load fails on foreign files with arbitrary exception types
        raise CheckpointError(f"{path}: not a PyTorch checkpoint ({_load_failure(path, exc)})") from None
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a dict of tensors, found {type(obj).__name__}")
    return dict(obj)


def _first_line(exc: BaseException) -> str:
    """The first sentence of an exception's message, else its type name (``KeyError: 101``, not ``101``)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = text.splitlines()[0].split(". ")[0] if text else ""
    return f"{type(exc).__name__}: {first}" if isinstance(exc, KeyError) or not first else first


def _head(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read(2)


def _is_safetensors(path: str | os.PathLike) -> bool:
    """Whether the file starts like safetensors: an 8-byte little-endian header length, then a JSON object."""
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:] == b"{" and int.from_bytes(head[:8], "little") < os.path.getsize(path)


def _read_safetensors(path: str | os.PathLike) -> dict:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable safetensors file ({_first_line(exc)})") from None


def _is_torch_file(path: str | os.PathLike) -> bool:
    """Whether the file starts like ``torch.save`` output: a zip archive or a pickle."""
    head = _head(path)
    return head == b"PK" or head.startswith(b"\x80")


def _load_failure(path: str | os.PathLike, exc: BaseException) -> str:
    """Why ``torch.load`` failed: the file's kind when it is neither a zip archive nor a pickle, else the error."""
    if not _is_torch_file(path):
        return f"neither a zip archive nor a pickle; the file starts with {_head(path)!r}"
    return _first_line(exc)


def _unpickler_reason(exc: BaseException) -> str:
    """The line of a weights-only load failure that names the refused object (``Unsupported global: ...``)."""
    for line in str(exc).splitlines():
        if "WeightsUnpickler error:" in line:
            return line.split("WeightsUnpickler error:", 1)[1].split(" was not ")[0].strip()
    return _first_line(exc)


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


def load_pretrained(
    model: nn.Module, path: str | os.PathLike, *, trust_checkpoint: bool = False, new_classifier: bool = False
) -> nn.Module:
    """Load ``path`` into a zoo ``model``, converting upstream formats with the model's
    ``convert_state_dict(state_dict) -> state_dict`` when it defines one.

    ``new_classifier``: where the checkpoint's classifier (``pretrained_cfg["classifier"]``) does not fit the
    model's (another number of classes, or none), the model keeps its own (timm's ``pretrained=True``).
    """
    state = unwrap_state_dict(read_checkpoint(path, trust_checkpoint=trust_checkpoint))
    convert = getattr(model, "convert_state_dict", None)
    if convert is not None:
        state = convert(state)
    if new_classifier:
        state = _keep_own_classifier(model, state)
    load_state_dict_checked(model, state, str(path))
    return model


def _keep_own_classifier(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with the model's own classifier tensors when the checkpoint's differ in names or shapes."""
    head = (getattr(model, "pretrained_cfg", None) or {}).get("classifier")
    if not head:
        return state
    own = model.state_dict()

    def in_head(key: str) -> bool:
        return key == head or key.startswith(f"{head}.")

    theirs = {k: tuple(v.shape) for k, v in state.items() if in_head(k)}
    ours = {k: tuple(v.shape) for k, v in own.items() if in_head(k)}
    if theirs == ours:
        return state
    return {**{k: v for k, v in state.items() if not in_head(k)}, **{k: v for k, v in own.items() if in_head(k)}}
