"""What every ``<task> train`` command shares: its flags and how it runs a training."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Mapping
from typing import Any

from densevision.cli._types import add_device_argument, add_progress_argument


def add_training_arguments(parser: argparse.ArgumentParser, config_class: type, *, skip: tuple[str, ...] = ()) -> None:
    """What every ``<task> train`` takes: ``--out RUN_DIR``, ``--resume``, ``--device``, ``--no-progress`` and one
    flag per field of the task's typed config (with ``--config`` and ``--set``; ``--batch`` and ``--num-workers``
    as the old spellings of ``--batch-size`` and ``--workers``)."""
    from densevision.engine.config import add_config_flags

    parser.add_argument("--out", required=True, metavar="RUN_DIR", help="run directory")
    parser.add_argument("--resume", action="store_true", help="continue RUN_DIR/last.pt with the same recipe")
    add_device_argument(parser)
    add_progress_argument(parser)
    add_config_flags(parser, config_class, skip=skip,
                     aliases={"train.batch_size": ["--batch"], "train.workers": ["--num-workers"]})


def run_training(
    args: argparse.Namespace,
    config: Any,
    train: Callable[..., Mapping[str, Any]],
    inputs: Mapping[str, str | os.PathLike | None],
) -> int:
    """Refuse a run directory that is one of ``inputs`` (flag -> path), run ``train(config, args.out, ...)`` (the
    process group is left in any case) and print one summary line on the main process."""
    from densevision.engine import destroy_distributed, is_main_process
    from densevision.io import check_outputs

    check_outputs({"--out": args.out}, inputs, folders=("--out",))
    try:
        summary = train(config, args.out, device=args.device, resume=args.resume, progress=not args.no_progress)
        main_process = is_main_process()  # asked before the process group is left: every rank is 0 after it
    finally:
        destroy_distributed()
    if main_process:
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in summary["metrics"].items())
        print(f"{args.out}: {summary['iteration']} iterations; {metrics or 'no validation data'}; "
              f"checkpoint: {summary['checkpoint']}")
    return 0
