"""The ``densevision`` command line: ``densevision <task> <verb>`` built from the static table ``COMMANDS``.

A verb module adds its flags with ``add_arguments(parser)`` and does the work in ``run(args) -> int``; a group
module with its own ``register(subparsers)`` (``bpr``) adds its whole subtree. Only the modules of the
command being run are imported, and none of them imports torch at import time, so ``--help`` is fast.

Every expected failure (``DenseVisionError``, ``OSError``, malformed JSON or text) is printed as one line naming
the file and the cause, exit status 2; anything else is a bug: one line, exit status 1, and the traceback with
``--debug`` or ``DENSEVISION_DEBUG=1``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Sequence

from densevision import __version__
from densevision.cli._spec import Group, Registered, Verb
from densevision.cli.detect import DETECT, EVAL, PREDICT, TRAIN
from densevision.cli.pose import POSE
from densevision.cli.seg import SEG
from densevision.errors import DenseVisionError, UntrustedCheckpointError

COMMANDS: tuple[Group | Verb | Registered, ...] = (
    DETECT,
    Registered("bpr", "bpr", "boundary patch refinement of instance masks: patches, train, refine"),
    SEG,
    POSE,
    Group("data", "make or check data sets", "Make the synthetic shapes data set or check a COCO data set.", (
        Verb("synth", "data", "write the synthetic shapes data set", "add_synth_arguments", "run_synth"),
        Verb("check", "data", "report every problem of a COCO instances file", "add_check_arguments", "run_check"),
    )),
    Verb("eval", EVAL.module, f"{EVAL.help} (= detect eval)"),
    Verb("models", "models", "list zoo models with params, GMACs and input size"),
    Verb("bench", "bench", "measure forward throughput (img/s), optionally against timm / upstream formulations"),
    Verb("export-onnx", "export", "export a zoo model to ONNX (checked with ONNX Runtime)"),
    Verb("demo", "demo", "end-to-end demo: detector + boundary refinement on synthetic data"),
    Verb("train", TRAIN.module, "alias of `detect train`"),
    Verb("predict", PREDICT.module, "alias of `detect predict`"),
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line, like every other error of the CLI."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")


def _module(name: str):
    return importlib.import_module(f"{__name__}.{name}")


def _add_verb(sub: argparse._SubParsersAction, verb: Verb, path: str, full: bool) -> None:
    parser = sub.add_parser(verb.name, help=verb.help, description=verb.help)
    if full:
        getattr(_module(verb.module), verb.add)(parser)
        parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                            help="show the traceback of an internal error")
        parser.set_defaults(func=getattr(_module(verb.module), verb.run), command_name=path)


def _add_registered(sub: argparse._SubParsersAction, entry: Registered, full: bool) -> None:
    if full:
        _module(entry.module).register(sub)
    else:
        sub.add_parser(entry.name, help=entry.help)


def _selected(argv: Sequence[str] | None, names: Sequence[str]) -> str | None:
    """The first argument that is not an option, when it names one of ``names``; ``None`` (build all) without
    ``argv``."""
    if argv is None:
        return None
    first = next((a for a in argv if not a.startswith("-")), "")
    return first if first in names else ""


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The ``densevision`` parser. With ``argv``, only the command it names gets its flags (the other commands
    are listed with their help line), so only that command's module is imported; without, the whole tree."""
    parser = _Parser(
        prog="densevision",
        description="Dense prediction toolkit: model zoo, Mask R-CNN, boundary patch refinement, COCO evaluation. "
        "Commands are `densevision <task> <verb>`; `train` and `predict` are aliases of `detect train` and "
        "`detect predict`.",
    )
    parser.add_argument("--version", action="version", version=f"densevision {__version__}")
    parser.add_argument("--debug", action="store_true",
                        help="show the traceback of an internal error (also DENSEVISION_DEBUG=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    chosen = _selected(argv, [c.name for c in COMMANDS])
    for entry in COMMANDS:
        full = chosen is None or chosen == entry.name
        if isinstance(entry, Registered):
            _add_registered(sub, entry, full)
        elif isinstance(entry, Verb):
            _add_verb(sub, entry, entry.name, full)
        else:
            group = sub.add_parser(entry.name, help=entry.help, description=entry.description)
            if not full:
                continue
            verbs = group.add_subparsers(dest="verb", metavar="VERB", required=True)
            rest = None if argv is None else list(argv)[list(argv).index(entry.name) + 1:]
            verb_chosen = _selected(rest, [v.name for v in entry.verbs])
            for verb in entry.verbs:
                _add_verb(verbs, verb, f"{entry.name} {verb.name}", verb_chosen in (None, verb.name))
    return parser


def _check_device(args: argparse.Namespace) -> None:
    """Refuse an unknown ``--device`` and CUDA on a machine without it, before the command writes anything."""
    device = getattr(args, "device", None)
    if not isinstance(device, str):
        return
    from densevision.cli._types import _DEVICE

    if not _DEVICE.match(device):
        raise DenseVisionError(f"--device {device}: expected auto, cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise DenseVisionError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise DenseVisionError(f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here")


def expected_error(exc: BaseException, args: argparse.Namespace | None = None) -> str | None:
    """The one-line message of an expected failure (naming the file and the cause), ``None`` for a bug."""
    if isinstance(exc, UntrustedCheckpointError):
        if args is not None and hasattr(args, "trust_checkpoint"):
            return f"{exc.untrusted_text}; if you trust its source, pass --trust-checkpoint"
        if args is not None:
            return f"{exc.untrusted_text}; this command loads weights-only checkpoints (save the tensors alone)"
        return str(exc)
    if isinstance(exc, DenseVisionError):
        return " ".join(str(exc).split("\n"))
    if isinstance(exc, OSError):
        cause = exc.strerror or str(exc) or type(exc).__name__
        if exc.filename is None:
            return cause
        target = f" -> {exc.filename2}" if exc.filename2 is not None else ""
        return f"{exc.filename}{target}: {cause}"
    if isinstance(exc, json.JSONDecodeError):
        return f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
    if isinstance(exc, UnicodeDecodeError):
        return f"not a UTF-8 text file ({exc.reason} at byte {exc.start})"
    return None


def _debug(args: argparse.Namespace | None) -> bool:
    return bool(getattr(args, "debug", False)) or os.environ.get("DENSEVISION_DEBUG", "") not in ("", "0")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI: expected failures print one ``error:`` line and return 2, bugs one line and return 1 (the
    traceback with ``--debug``)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = None
    name = "densevision"
    try:
        try:
            args = build_parser(argv).parse_args(argv)
        except SystemExit as exc:  # --help, --version, a refused flag
            return exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        name = f"densevision {getattr(args, 'command_name', args.command)}"
        _check_device(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        message = expected_error(exc, args)
        if message is not None:
            print(f"{name}: error: {message}", file=sys.stderr)
            return 2
        if _debug(args):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"{name}: internal error: {type(exc).__name__}: {first} (a bug; run with --debug or "
              "DENSEVISION_DEBUG=1 for the traceback)", file=sys.stderr)
        return 1
