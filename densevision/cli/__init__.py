"""The ``densevision`` command line. Each module in this package adds one subcommand through
``register(subparsers)``; the subcommand's ``func(args) -> int`` does the work."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence

from densevision import __version__
from densevision.errors import DenseVisionError


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one subparser per module of ``densevision.cli``."""
    parser = argparse.ArgumentParser(
        prog="densevision",
        description="Dense prediction toolkit: model zoo, Mask R-CNN, boundary patch refinement, COCO evaluation.",
    )
    parser.add_argument("--version", action="version", version=f"densevision {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; user errors print one ``error:`` line and return 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DenseVisionError as exc:
        print(f"densevision {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"densevision {args.command}: interrupted", file=sys.stderr)
        return 130
