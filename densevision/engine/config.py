"""Typed run configurations: dataclasses whose fields hold every default once, read from YAML, overridden
from the command line, saved with each run.

A configuration is a (nested) dataclass; its leaves are ``int``, ``float``, ``bool``, ``str``, ``dict``,
``list[int]`` / ``list[float]``, ``Literal[...]`` choices or ``Optional`` / unions of those. Keys are dotted
paths (``train.lr``, ``model.backbone``). Values merge in this order (later wins)::

    dataclass defaults < --config FILE.yaml < flags given on the command line < --set key.path=value

:func:`add_config_flags` gives a parser one flag per leaf (``--lr`` for ``train.lr``; the flag's default is
None, so the dataclass stays the only place of the default) plus ``--config`` and ``--set``;
:func:`config_from_args` merges. An unknown key or a value of the wrong type is one
:class:`~densevision.errors.DenseVisionError` naming the file (or flag) and the key. A run's ``config.yaml``
(:func:`save_config`) is accepted back by ``--config``.

This module imports neither torch nor numpy (the command line loads it before deciding what to run).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from densevision.errors import DenseVisionError
from densevision.io import atomic_open

CONFIG_FILE = "config.yaml"
# Keys that cannot change what a run computes: a resumed run may differ from the saved config in these.
RESUME_FREE_KEYS = frozenset({
    "train.log_every", "train.workers", "train.eval_batch_size", "train.tensorboard", "train.checkpoint_every",
    "train.keep_checkpoints",
})

C = TypeVar("C")
_MISSING = object()


def plain_value(value: Any) -> Any:
    """``value`` as plain Python data that YAML and ``torch.load(weights_only=True)`` accept: dataclasses and
    mappings become dicts with string keys, sequences lists, NumPy / one-element tensor scalars Python numbers,
    paths and other objects strings."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_dict(value)
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain_value(v) for v in value]
    if value is None:
        return None
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    item = getattr(value, "item", None)  # NumPy scalars, one-element arrays and tensors
    if callable(item):
        try:
            return plain_value(item())
        except (ValueError, RuntimeError):
            pass
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def to_dict(config: Any) -> dict[str, Any]:
    """A dataclass configuration as nested plain dicts (field order kept)."""
    return {f.name: plain_value(getattr(config, f.name)) for f in dataclasses.fields(config)}


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_config(kind: Any) -> bool:
    return isinstance(kind, type) and dataclasses.is_dataclass(kind)


def _type_name(kind: Any) -> str:
    origin = typing.get_origin(kind)
    if origin is Literal:
        return "one of " + ", ".join(map(str, typing.get_args(kind)))
    if origin in (Union, types.UnionType):
        return " or ".join("null" if a is type(None) else _type_name(a) for a in typing.get_args(kind))
    if origin in (list, tuple, Sequence):
        return f"a list of {_type_name(typing.get_args(kind)[0])}"
    if origin is dict or kind is dict:
        return "a mapping"
    return getattr(kind, "__name__", str(kind))


def _check(kind: Any, value: Any, key: str, source: str) -> Any:
    """``value`` checked against the annotation ``kind`` (ints are accepted as floats, tuples as lists)."""
    origin = typing.get_origin(kind)
    if kind is Any:
        return value
    if origin is Literal:
        if value in typing.get_args(kind):
            return value
    elif origin in (Union, types.UnionType):
        for member in typing.get_args(kind):
            try:
                return _check(member, value, key, source)
            except DenseVisionError:
                continue
    elif kind is type(None):
        if value is None:
            return None
    elif origin in (list, tuple, Sequence):
        if isinstance(value, list | tuple):
            (item,) = typing.get_args(kind)[:1] or (Any,)
            return [_check(item, v, f"{key}[{i}]", source) for i, v in enumerate(value)]
    elif origin is dict or kind is dict:
        if isinstance(value, Mapping):
            return plain_value(value)
    elif kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads 1e-3 as a string
            with contextlib.suppress(ValueError):
                return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif _is_config(kind):
        if isinstance(value, Mapping):
            return from_dict(kind, value, source, prefix=f"{key}.")
        if isinstance(value, kind):
            return value
    raise DenseVisionError(f"{source}: {key} must be {_type_name(kind)}, got {value!r}")


def leaf_keys(cls: type, prefix: str = "") -> dict[str, Any]:
    """Every leaf of a configuration class: ``{"train.lr": float, ...}`` in field order."""
    out: dict[str, Any] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if _is_config(kind):
            out.update(leaf_keys(kind, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = kind
    return out


def _unknown(key: str, known: Sequence[str], source: str) -> DenseVisionError:
    close = difflib.get_close_matches(key, list(known), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    return DenseVisionError(f"{source}: unknown key {key}{hint}")


def from_dict(cls: type[C], data: Mapping[str, Any] | None, source: str = "config", *, prefix: str = "") -> C:
    """Build ``cls`` from a nested mapping; missing keys keep their defaults, an unknown key or a value of
    the wrong type raises one error naming ``source`` and the dotted key."""
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise DenseVisionError(f"{source}: {prefix.rstrip('.') or 'the config'} must be a mapping, "
                               f"got {type(data).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    values = {}
    for key, value in data.items():
        if key not in names:
            known = [f"{prefix}{k}" for k in leaf_keys(cls)] + [f"{prefix}{n}" for n in names]
            raise _unknown(f"{prefix}{key}", known, source)
        values[key] = _check(hints[key], value, f"{prefix}{key}", source)
    return cls(**values)


def _split(key: str) -> list[str]:
    return key.split(".")


def get_value(config: Any, key: str) -> Any:
    """The value at a dotted ``key``."""
    for part in _split(key):
        config = getattr(config, part)
    return config


def set_value(config: C, key: str, value: Any, source: str = "--set") -> C:
    """A copy of ``config`` with the leaf at dotted ``key`` set to ``value`` (type-checked)."""
    leaves = leaf_keys(type(config))
    if key not in leaves:
        raise _unknown(key, list(leaves), source)
    return _replace_at(config, _split(key), _check(leaves[key], value, key, source))


def _replace_at(config: C, parts: list[str], value: Any) -> C:
    head, rest = parts[0], parts[1:]
    return dataclasses.replace(config, **{head: _replace_at(getattr(config, head), rest, value) if rest else value})


def parse_override(text: str) -> tuple[str, Any]:
    """``"train.lr=0.01"`` -> ``("train.lr", 0.01)``; the value is read as YAML (``[1, 2]``, ``null``,
    ``true``, ``{width: 8}``)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise DenseVisionError(f"--set: expected KEY=VALUE (e.g. train.lr=0.01), got {text!r}")
    try:
        return key.strip(), yaml.safe_load(value)
    except yaml.YAMLError:
        raise DenseVisionError(f"--set: {key}: not a valid value {value!r}") from None


def apply_overrides(config: C, overrides: Sequence[str]) -> C:
    """``config`` with each ``key.path=value`` of ``overrides`` applied in order."""
    for text in overrides:
        key, value = parse_override(text)
        config = set_value(config, key, value, "--set")
    return config


def load_config(path: str | os.PathLike, cls: type[C]) -> C:
    """Read a YAML configuration file as ``cls`` (absent keys keep their defaults)."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise DenseVisionError(f"{source}: config file not found") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise DenseVisionError(f"{source}: not valid YAML ({first})") from None
    return from_dict(cls, data, source)


def save_config(config: Any, path: str | os.PathLike) -> Path:
    """Write a configuration (dataclass or mapping) as YAML, atomically; returns the path."""
    path = Path(path)
    data = to_dict(config) if dataclasses.is_dataclass(config) else plain_value(dict(config))
    with atomic_open(path, "w") as f:
        yaml.safe_dump(data, f, sort_keys=False)
    return path


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as ``{"a.b": value}``; dict-valued leaves (``model.backbone_kwargs``) are descended too,
    so an empty one adds no key."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_differences(saved: Mapping[str, Any], config: Any, *, ignore: frozenset[str] = RESUME_FREE_KEYS
                       ) -> list[str]:
    """Dotted leaf keys whose value in ``config`` differs from the ``saved`` mapping, except ``ignore``. A key
    the saved mapping lacks (saved before the key existed) counts as holding the key's default."""
    ours, theirs = flatten(to_dict(config)), flatten(plain_value(dict(saved)))
    defaults = flatten(to_dict(type(config)()))
    keys = [k for k in dict.fromkeys([*ours, *theirs]) if not any(k == i or k.startswith(f"{i}.") for i in ignore)]
    return [k for k in keys if ours.get(k, _MISSING) != theirs.get(k, defaults.get(k, _MISSING))]


# ------------------------------------------------------------------------------------------- training recipe
@dataclasses.dataclass
class TrainConfig:
    """What every task's training shares: optimisation, schedule, evaluation, checkpoints and logging. The
    defaults are the detector's recipe; a task changes the ones its recipe differs in, in its own config."""

    iters: int = dataclasses.field(default=1000, metadata={"help": "iterations (optimizer steps)"})
    batch_size: int = dataclasses.field(default=4, metadata={"help": "samples per iteration and process"})
    lr: float = dataclasses.field(default=0.02, metadata={"help": "SGD learning rate"})
    momentum: float = 0.9
    weight_decay: float = 1e-4
    schedule: Literal["cosine", "step", "poly", "constant"] = dataclasses.field(
        default="cosine", metadata={"help": "LR decay after the warm-up"})
    warmup_iters: int = dataclasses.field(default=100, metadata={"help": "linear LR warm-up iterations"})
    milestones: list[int] | None = dataclasses.field(default=None, metadata={
        "help": "iterations where the step schedule multiplies the LR by 0.1 (default: 67% and 89% of iters)"})
    power: float = dataclasses.field(default=0.9, metadata={"help": "poly schedule power"})
    grad_clip: float | None = dataclasses.field(default=None, metadata={"help": "clip the gradient norm"})
    amp: Literal["off", "auto", "bf16", "fp16"] = dataclasses.field(
        default="off", metadata={"help": "mixed precision; auto: fp16 on CUDA, bf16 on the CPU"})
    seed: int = 0
    eval_every: int = dataclasses.field(default=0, metadata={"help": "evaluate every N iterations (0: at the end)"})
    eval_batch_size: int = 2
    checkpoint_every: int = 500
    keep_checkpoints: int | None = dataclasses.field(
        default=None, metadata={"help": "periodic checkpoints to keep (null: all)"})
    log_every: int = dataclasses.field(default=20, metadata={"help": "iterations averaged into one log entry"})
    workers: int = dataclasses.field(default=0, metadata={"help": "data loading processes"})
    tensorboard: bool = dataclasses.field(default=True, metadata={"help": "write TensorBoard events"})

    def step_milestones(self) -> list[int]:
        """``milestones``, or 67% and 89% of ``iters`` (detectron2's 210k and 250k of 270k)."""
        if self.milestones is not None:
            return list(self.milestones)
        return sorted({m for m in (round(0.67 * self.iters), round(0.89 * self.iters)) if 0 < m < self.iters})


# ------------------------------------------------------------------------------------------- command line
def flag_name(key: str) -> str:
    """``train.batch_size`` -> ``--batch-size`` (the last part of the key)."""
    return "--" + _split(key)[-1].replace("_", "-")


def _flag_options(kind: Any, metavar: str) -> dict[str, Any]:
    """argparse ``type`` / ``nargs`` / ``choices`` for a leaf annotation (values are checked again later)."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        members = [a for a in typing.get_args(kind) if a is not type(None)]
        lists = [a for a in members if typing.get_origin(a) in (list, tuple, Sequence)]
        kind = lists[0] if lists else members[0] if len(members) == 1 else kind
    origin = typing.get_origin(kind)
    if origin is Literal:
        return {"choices": typing.get_args(kind)}
    if origin in (list, tuple, Sequence):
        item = typing.get_args(kind)[0]
        return {"nargs": "+", "type": item if item in (int, float, str) else yaml.safe_load, "metavar": metavar}
    if kind is bool:
        return {"action": argparse.BooleanOptionalAction}
    if kind in (int, float, str):
        return {"type": kind, "metavar": metavar}
    return {"type": yaml.safe_load, "metavar": "YAML"}


def add_config_flags(
    parser: argparse.ArgumentParser, cls: type, *, skip: Sequence[str] = (), aliases: Mapping[str, Sequence[str]]
    | None = None,
) -> argparse.ArgumentParser:
    """Give ``parser`` ``--config FILE.yaml``, repeatable ``--set key.path=value`` and one flag per leaf of
    ``cls`` (except the keys in ``skip``). A flag's help comes from the field's ``metadata["help"]`` and shows
    the dataclass default; its argparse default is None (not given). ``aliases`` maps keys to extra option
    strings (``{"train.workers": ["--num-workers"]}``). Flag names must be unique."""
    aliases = aliases or {}
    defaults = cls()
    helps = _field_helps(cls)
    seen: dict[str, str] = {}
    for key, kind in leaf_keys(cls).items():
        if key in skip:
            continue
        name = flag_name(key)
        if name in seen:
            raise ValueError(f"flags of {seen[name]} and {key} collide ({name})")
        seen[name] = key
        default = plain_value(get_value(defaults, key))
        text = helps.get(key, "")
        shown = f"{text} " if text else ""
        parser.add_argument(
            name, *aliases.get(key, ()), dest=f"cfg:{key}", default=None,
            help=f"{shown}(config {key}; default {default!r})".replace("%", "%%"),
            **_flag_options(kind, _split(key)[-1].upper()),
        )
    parser.add_argument("--config", metavar="FILE.yaml", default=None,
                        help="YAML configuration (e.g. a run's config.yaml); flags and --set override it")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
                        help="override one configuration value, repeatable (e.g. --set train.lr=0.01)")
    return parser


def _field_helps(cls: type, prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if _is_config(hints[f.name]):
            out.update(_field_helps(hints[f.name], f"{prefix}{f.name}."))
        elif "help" in f.metadata:
            out[f"{prefix}{f.name}"] = f.metadata["help"]
    return out


def config_from_args(args: argparse.Namespace, cls: type[C]) -> C:
    """The configuration of a command: defaults < ``--config`` < flags given < ``--set``."""
    config = load_config(args.config, cls) if getattr(args, "config", None) else cls()
    leaves = leaf_keys(cls)
    for dest, value in vars(args).items():
        if dest.startswith("cfg:") and value is not None:
            key = dest[4:]
            if isinstance(value, list) and len(value) == 1 and typing.get_origin(leaves[key]) in (
                    Union, types.UnionType):
                with contextlib.suppress(DenseVisionError):  # `--min-size 64` for a number-or-list field
                    value = _check(leaves[key], value[0], key, flag_name(key))
            config = set_value(config, key, value, flag_name(key))
    return apply_overrides(config, getattr(args, "overrides", None) or [])
