"""One training entry for every task: :func:`train_task` wires a :class:`~densevision.engine.Task` into the
:class:`~densevision.engine.Trainer` (SGD, warm-up and schedule, iteration-indexed loader, evaluation,
best-metric and checkpoint hooks, AMP, DDP under torchrun, TensorBoard, progress, loss curve).
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from densevision.engine.checkpoint import Checkpointer
from densevision.engine.config import config_differences
from densevision.engine.distributed import init_distributed
from densevision.engine.optim import build_optimizer, build_scheduler
from densevision.engine.rng import seed_everything
from densevision.engine.sampler import IterationLoader
from densevision.engine.task import Task
from densevision.engine.trainer import Trainer
from densevision.errors import DenseVisionError


def check_resume(run_dir: str | os.PathLike, config: Any) -> None:
    """Refuse ``--resume`` into a directory without a checkpoint, and a recipe that differs from the one the
    checkpoint was trained with (except keys that cannot change the result)."""
    checkpointer = Checkpointer(run_dir)
    if not checkpointer.has_checkpoint():
        raise DenseVisionError(f"{run_dir}: nothing to resume (no {checkpointer.last_path.name})")
    saved = checkpointer.load().get("config")
    if isinstance(saved, dict) and saved:
        differing = config_differences(saved, config)
        if differing:
            shown = ", ".join(differing[:8]) + (f" and {len(differing) - 8} more" if len(differing) > 8 else "")
            raise DenseVisionError(
                f"{run_dir}: the recipe differs from the run's saved config in {shown}; "
                "resume with the run's config.yaml (--config) or start a new run"
            )


class _Lines(logging.Handler):
    """Keeps the messages of the records it handles."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


@contextlib.contextmanager
def _info_lines(name: str) -> Iterator[list[str]]:
    """The INFO messages logged under the logger ``name`` while the block runs (e.g. the weights a backbone starts
    from, which the model builders report)."""
    handler, logger = _Lines(), logging.getLogger(name)
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def train_task(
    task: Task,
    run_dir: str | os.PathLike,
    *,
    device: str = "auto",
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``task`` (configured by ``task.config``) into ``run_dir``; returns the trainer's summary plus
    ``run_dir`` and ``checkpoint`` (``last.pt``).

    ``resume``: continue ``run_dir/last.pt`` (an error when there is none or when the recipe differs from
    the saved one); without it ``run_dir`` must hold no checkpoint. The directory is created only once the
    data and arguments are validated.
    """
    config = task.config
    train = config.train
    if resume:
        check_resume(run_dir, config)
    elif Checkpointer(run_dir).has_checkpoint():
        raise DenseVisionError(
            f"{run_dir} already holds a training checkpoint (last.pt); resume it or choose another run directory"
        )
    dist = init_distributed(device)
    amp = train.amp
    if amp == "auto":
        amp = "fp16" if dist.device.type == "cuda" else "bf16"
    if amp == "fp16" and dist.device.type != "cuda":
        raise DenseVisionError("fp16 mixed precision needs a CUDA device; use amp 'bf16' on the CPU")
    dataset = task.build_train_data()
    seed_everything(train.seed)
    with _info_lines("densevision") as setup_lines:
        model = task.build_model()
    if hasattr(task, "build_optimizer"):  # a task whose recipe is not SGD builds its own
        optimizer, scheduler = task.build_optimizer(model)
    else:
        optimizer = build_optimizer(model, name=getattr(task, "optimizer", "sgd"), lr=train.lr,
                                    momentum=train.momentum, weight_decay=train.weight_decay)
        scheduler = build_scheduler(optimizer, max_iters=train.iters, schedule=train.schedule,
                                    warmup_iters=train.warmup_iters, milestones=train.step_milestones(),
                                    power=train.power)
    loader = IterationLoader(dataset, train.batch_size, seed=train.seed, collate_fn=task.collate_fn,
                             num_workers=train.workers, pin_memory=dist.device.type == "cuda")
    evaluator = task.build_evaluator(Path(run_dir), dist.device)
    trainer = Trainer(
        model, optimizer, loader,
        scheduler=scheduler,
        run_dir=run_dir,
        max_iters=train.iters,
        device=dist.device,
        amp=amp,
        grad_clip=train.grad_clip,
        checkpoint_every=train.checkpoint_every,
        keep_checkpoints=train.keep_checkpoints,
        eval_every=train.eval_every,
        evaluator=evaluator,
        best_metric=task.best_metric if evaluator is not None else None,
        log_every=train.log_every,
        config=config,
        model_spec=task.model_spec(model),
        seed=train.seed,
        loss_fn=task.loss,
        progress=progress,
        tensorboard=train.tensorboard,
        resume=resume,
        sync_bn=bool(getattr(task, "sync_bn", False)),
    )
    for line in setup_lines:  # already on stderr
        trainer.logger.log(line, echo="never")
    summary = trainer.train()
    return {**summary, "run_dir": Path(run_dir), "checkpoint": trainer.checkpointer.last_path}
