"""``densevision models``: list the zoo with parameter counts, GMACs and default input sizes."""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of ``models``."""
    parser.description = (
        "List registered models: parameters (millions, 1000 classes; pose networks 17 joints), GMACs of one "
        "forward call at the default input size (torch.utils.flop_counter, FLOPs/2) and the default input size."
    )
    parser.add_argument(
        "pattern", nargs="?", help="shell-style filter ('swin*') or a substring ('vit_small')"
    )
    parser.add_argument("--json", action="store_true", help="print a json list instead of a table")


def run(args: argparse.Namespace) -> int:
    """Print the table (or json)."""
    from densevision.errors import DenseVisionError
    from densevision.flops import model_complexity
    from densevision.models import list_models

    names = list_models(args.pattern, kind=None)
    if not names:
        raise DenseVisionError(f"no model matches {args.pattern!r} (run `densevision models` for the list)")
    rows = [model_complexity(name) for name in names]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    print(f"{'model':<{width}}  {'params (M)':>10}  {'GMACs':>7}  input")
    for r in rows:
        size = "x".join(str(s) for s in r["input_size"][1:])
        print(f"{r['name']:<{width}}  {r['params'] / 1e6:>10.2f}  {r['gmacs']:>7.2f}  {size}")
    return 0
