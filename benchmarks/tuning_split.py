"""The held-out tuning split the demo benchmarks choose on: ``--seed`` (not the demo's own) and ``--threads``."""

from __future__ import annotations

import argparse
from dataclasses import replace

import torch

from densevision.demo import DemoRecipe


def add_tuning_arguments(parser: argparse.ArgumentParser, threads: int = 1) -> None:
    """``--seed`` of the tuning split (default 1) and ``--threads`` (default ``threads``)."""
    parser.add_argument("--seed", type=int, default=1, help="tuning split seed; the demo's splits use 0")
    parser.add_argument("--threads", type=int, default=threads)


def tuning_recipe(parser: argparse.ArgumentParser, args: argparse.Namespace) -> DemoRecipe:
    """The demo recipe with the tuning split's seed, after refusing the demo's own seed (no image shared with its
    training or validation split); sets torch's thread count."""
    if args.seed == DemoRecipe().seed:
        parser.error(f"--seed {args.seed} is the demo's own seed; the tuning split must differ from it")
    torch.set_num_threads(args.threads)
    return replace(DemoRecipe(), seed=args.seed)
