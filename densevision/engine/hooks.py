"""Training hooks: everything around the optimizer step of :class:`densevision.engine.Trainer`.

The trainer runs its hooks after each step in this order:

1. :class:`LRSchedulerHook`  steps the per-iteration LR schedule;
2. :class:`EvalHook`         every ``every`` iterations and at the end: ``trainer.evaluate()``;
3. :class:`BestMetricHook`   keeps the best value of one evaluation metric (``trainer.best``);
4. the caller's hooks;
5. :class:`LoggingHook`      progress bar, ``log.txt``, TensorBoard scalars, ``metrics.json``, ``loss_curve.png``;
6. :class:`CheckpointHook`   ``iter_*.pt`` and ``last.pt`` periodically, ``best.pt`` when the best improved (one
                             line of ``log.txt`` each time).

A hook adds its own per-iteration scalars with ``trainer.put_scalar(name, value)`` before the logging hook
records the iteration. A hook with state that must survive a restart returns it from ``state_dict`` (tensors
and plain Python values only).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from densevision.errors import DenseVisionError

if TYPE_CHECKING:
    import torch

    from densevision.engine.trainer import Trainer


def every(done: int, period: int, max_iters: int) -> bool:
    """Whether ``done`` completed iterations end a period (``period`` 0: only the last iteration)."""
    return (period > 0 and done % period == 0) or done == max_iters


class HookBase:
    """A training hook. ``self.trainer`` is set when the trainer registers it."""

    trainer: Trainer

    def before_train(self) -> None:
        """Called once before the first iteration (after a resume)."""

    def after_train(self) -> None:
        """Called once after the loop, also when it stops with an exception."""

    def before_step(self) -> None:
        """Called before each iteration; ``trainer.iter`` is the 0-based iteration about to run."""

    def after_step(self) -> None:
        """Called after each iteration's optimizer step; ``trainer.iter + 1`` iterations are done."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned."""


class LRSchedulerHook(HookBase):
    """Steps the per-iteration learning-rate scheduler after each optimizer step."""

    def __init__(self, scheduler: torch.optim.lr_scheduler.LRScheduler) -> None:
        self.scheduler = scheduler

    def after_step(self) -> None:
        self.scheduler.step()


class EvalHook(HookBase):
    """Runs :meth:`Trainer.evaluate` every ``every`` iterations and after the last one."""

    def __init__(self, every: int) -> None:
        self.every = every

    def after_step(self) -> None:
        if every(self.trainer.iter + 1, self.every, self.trainer.max_iters):
            self.trainer.evaluate()


class BestMetricHook(HookBase):
    """After each evaluation, keeps ``trainer.best = {"metric", "value", "iteration"}`` for ``metric``
    (higher is better with ``mode="max"``, lower with ``"min"``); the checkpoint hook then writes ``best.pt``."""

    def __init__(self, metric: str, mode: str = "max") -> None:
        if mode not in ("max", "min"):
            raise DenseVisionError(f"best_mode must be 'max' or 'min', got {mode!r}")
        self.metric = metric
        self.mode = mode

    def after_step(self) -> None:
        trainer = self.trainer
        done = trainer.iter + 1
        if trainer.metrics_iteration != done:
            return
        metrics = trainer.metrics
        if self.metric not in metrics:
            raise DenseVisionError(
                f"best_metric {self.metric!r} is not among the evaluator's metrics ({', '.join(metrics) or 'none'})"
            )
        value = float(metrics[self.metric])
        best = trainer.best
        if best is None or (value > best["value"] if self.mode == "max" else value < best["value"]):
            trainer.best = {"metric": self.metric, "value": value, "iteration": done}


class LoggingHook(HookBase):
    """Feeds each step's scalars to the trainer's :class:`~densevision.engine.TrainingLogger`; writes the
    summary files every ``summary_every`` iterations and at the end, where it also logs the run's last line."""

    def __init__(self, summary_every: int) -> None:
        self.summary_every = summary_every

    def before_train(self) -> None:
        self.trainer.logger.start(self.trainer.start_iter)

    def after_step(self) -> None:
        trainer = self.trainer
        trainer.logger.record(trainer.iter, trainer.step_scalars)
        if every(trainer.iter + 1, self.summary_every, trainer.max_iters):
            trainer.logger.write_summary()

    def after_train(self) -> None:
        trainer = self.trainer
        trainer.logger.write_summary()
        trainer.logger.log_end(metrics=trainer.metrics, best=trainer.best)
        trainer.logger.close()

    def state_dict(self) -> dict[str, Any]:
        return self.trainer.logger.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.trainer.logger.load_state_dict(state)


class CheckpointHook(HookBase):
    """Rank 0 saves the training state every ``every`` iterations and after the last one (``iter_*.pt`` and
    ``last.pt``), and ``best.pt`` whenever this iteration's evaluation improved the best metric."""

    def __init__(self, every: int) -> None:
        self.every = every

    def after_step(self) -> None:
        trainer = self.trainer
        done = trainer.iter + 1
        periodic = every(done, self.every, trainer.max_iters)
        best = trainer.best is not None and trainer.best["iteration"] == done
        if trainer.is_main and (periodic or best):
            checkpointer = trainer.checkpointer
            path = checkpointer.save(trainer.state_dict(), done, last=periodic, best=best)
            names = [path.name] if not periodic else [
                path.name, checkpointer.last_path.name, *([checkpointer.best_path.name] if best else [])]
            trainer.logger.log(f"[iter {done}/{trainer.max_iters}] checkpoint: {', '.join(names)}", echo="no_bar")
