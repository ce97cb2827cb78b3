"""YAML files of defaults for command-line flags, and the resolved configuration saved with each run.

``add_config_argument(parser)`` gives ``parser`` a ``--config FILE.yaml`` option: the file's keys (flag names,
``-`` or ``_``) become the defaults of that parse, so flags on the command line still win. It works for a
top-level parser and for a subcommand's parser alike. A key that is no flag of the parser, a value outside a
flag's choices or of the wrong type stops the parse with one error line naming the file and the keys.

Example ``train.yaml``::

    lr: 0.02
    schedule: cosine
    milestones: [60000, 80000]
"""

from __future__ import annotations

import argparse
import difflib
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from densevision.errors import DenseVisionError
from densevision.io import atomic_open

CONFIG_FILE = "config.yaml"
_NOT_CONFIGURABLE = ("help", "version", "config")


def _configurable_actions(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {
        action.dest: action
        for action in parser._actions
        if action.dest not in _NOT_CONFIGURABLE
        and action.dest != argparse.SUPPRESS
        and not isinstance(action, argparse._SubParsersAction)
    }


def _convert(action: argparse.Action, key: str, value: Any, source: str) -> Any:
    """Apply the flag's ``type`` to string values (and to the items of lists) and check ``choices``."""
    if action.nargs == 0:
        if not isinstance(value, bool):
            raise DenseVisionError(f"{source}: {key} is an on/off flag: use true or false, not {value!r}")
        return value
    many = action.nargs in ("*", "+") or isinstance(action.nargs, int)
    if many and not isinstance(value, list):
        raise DenseVisionError(f"{source}: {key} takes a list of values, got {value!r}")
    items = value if many else [value]
    converted = []
    for item in items:
        if isinstance(item, str) and callable(action.type):
            try:
                item = action.type(item)
            except (TypeError, ValueError, argparse.ArgumentTypeError) as exc:
                raise DenseVisionError(f"{source}: {key}: invalid value {item!r} ({exc})") from None
        if action.choices is not None and item not in action.choices:
            choices = ", ".join(map(str, action.choices))
            raise DenseVisionError(f"{source}: {key}: {item!r} is not one of {choices}")
        converted.append(item)
    return converted if many else converted[0]


def load_config(path: str | os.PathLike, parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Read a YAML mapping of flag defaults for ``parser`` and return it keyed by argparse ``dest``, values
    converted and checked."""
    source = str(path)
    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except FileNotFoundError:
        raise DenseVisionError(f"{source}: config file not found") from None
    except yaml.YAMLError as exc:
        first = " ".join(str(exc).split())
        raise DenseVisionError(f"{source}: not valid YAML ({first})") from None
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise DenseVisionError(f"{source}: a config file must map flags to values, got {type(data).__name__}")
    actions = _configurable_actions(parser)
    unknown = [str(key) for key in data if str(key).replace("-", "_") not in actions]
    if unknown:
        hints = []
        for key in unknown:
            close = difflib.get_close_matches(key.replace("-", "_"), list(actions), n=1)
            hints.append(f"{key} (did you mean {close[0]}?)" if close else key)
        raise DenseVisionError(f"{source}: unknown config keys: {', '.join(hints)}")
    return {
        str(key).replace("-", "_"): _convert(actions[str(key).replace("-", "_")], str(key), value, source)
        for key, value in data.items()
    }


def _parse_known_args_with_config(
    parser: argparse.ArgumentParser, parse_known_args: Callable, args: Sequence[str] | None, namespace: Any
) -> tuple[argparse.Namespace, list[str]]:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    given, _ = pre.parse_known_args(args)
    if given.config is None:
        return parse_known_args(args, namespace)
    try:
        values = load_config(given.config, parser)
    except DenseVisionError as exc:
        parser.error(str(exc))
    actions = _configurable_actions(parser)
    saved = {dest: actions[dest].default for dest in values}
    required = [actions[dest] for dest in values if actions[dest].required]
    parser.set_defaults(**values)
    for action in required:
        action.required = False
    try:
        return parse_known_args(args, namespace)
    finally:
        parser.set_defaults(**saved)
        for action in required:
            action.required = True


def add_config_argument(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add ``--config FILE.yaml`` to ``parser`` and make every parse with it take the file's values as
    defaults. Returns ``parser``."""
    parser.add_argument(
        "--config", metavar="FILE.yaml", default=None,
        help="YAML file of defaults for any flag of this command (flags given on the command line win)",
    )
    plain = parser.parse_known_args

    def parse_known_args(args: Sequence[str] | None = None, namespace: Any = None):
        return _parse_known_args_with_config(parser, plain, args, namespace)

    parser.parse_known_args = parse_known_args
    return parser


def parse_with_config(
    parser: argparse.ArgumentParser, argv: Sequence[str] | None = None
) -> argparse.Namespace:
    """Parse ``argv`` (default ``sys.argv[1:]``) honouring ``--config``; adds the option if missing."""
    if not any("--config" in action.option_strings for action in parser._actions):
        add_config_argument(parser)
    return parser.parse_args(argv)


def plain_value(value: Any) -> Any:
    """``value`` as plain Python data that YAML and ``torch.load(weights_only=True)`` accept: mappings become
    dicts with string keys, sequences lists, NumPy and one-element tensor scalars Python numbers, paths and
    other objects strings."""
    if isinstance(value, Mapping):
        return {str(k): plain_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [plain_value(v) for v in value]
    if value is None:
        return None
    for kind in (bool, int, float, str):
        if isinstance(value, kind):
            return kind(value)
    if isinstance(value, np.generic) or (isinstance(value, torch.Tensor) and value.numel() == 1):
        return plain_value(value.item())
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    return str(value)


def resolved_config(
    args: argparse.Namespace | Mapping[str, Any], parser: argparse.ArgumentParser | None = None
) -> dict[str, Any]:
    """The configuration as plain YAML/checkpoint-safe values (:func:`plain_value`); callables (``func`` of
    a subcommand) and ``config`` itself are dropped. With ``parser`` only its flags are kept, so the result
    can be fed back as ``--config``."""
    items = vars(args) if isinstance(args, argparse.Namespace) else dict(args)
    keep = set(_configurable_actions(parser)) if parser is not None else None
    return {
        key: plain_value(value)
        for key, value in items.items()
        if key != "config" and not callable(value) and (keep is None or key in keep)
    }


def save_config(config: argparse.Namespace | Mapping[str, Any], path: str | os.PathLike) -> Path:
    """Write the resolved configuration as YAML, atomically; returns the path."""
    path = Path(path)
    with atomic_open(path, "w") as f:
        yaml.safe_dump(resolved_config(config), f, sort_keys=False)
    return path
