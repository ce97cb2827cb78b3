"""A small iteration-based trainer with hooks, shared by every trainable model.

The loop is short (:meth:`Trainer.train`): for each iteration, hooks' ``before_step``,
:meth:`Trainer.run_step` (fetch batch, forward under autocast, non-finite check, backward, clip, optimizer
step), hooks' ``after_step``. Everything else is a hook (:mod:`densevision.engine.hooks`): LR schedule,
evaluation, best-metric tracking, the caller's hooks, logging, checkpoints, in that order.

Model contract: ``loss_fn(model, batch)`` (default ``model(batch)``) returns a dict of scalar losses, like
torchvision detection models in train mode (or one scalar tensor); the total loss is their sum. For
torchvision-style models taking ``(images, targets)`` pass ``loss_fn=lambda m, b: m(*b)``.

A NaN or infinite loss (on any rank) raises :class:`~densevision.errors.DenseVisionError` ("non-finite loss
at iteration N ...") before the optimizer step, so the weights and the last checkpoint stay as they were.
``checkpoint_every=0`` / ``eval_every=0`` mean "only after the last iteration".

Data contract: ``data`` is an iteration-indexed batch provider, either an object with
``iter_from(start_iter) -> iterator of batches`` (:class:`densevision.engine.IterationLoader`) or a callable
``data(iteration) -> batch``. The batch of iteration ``i`` must be a function of ``i`` (and the seed) only.

Exact resumption: before each forward pass the global generators are seeded from ``(seed, iteration, rank)``,
so dropout and other in-model randomness does not depend on history; a checkpoint holds the model, optimizer,
scheduler, grad scaler, generator states, iteration, configuration, best metric and the hooks' states
(logging history), and ``Trainer(..., resume=True)`` or :meth:`Trainer.resume` continues from it. A run
killed at any moment and resumed ends with the same weights as an uninterrupted run (bitwise on the CPU).

Distributed: call :func:`densevision.engine.init_distributed` first and pass its device; the trainer wraps
the model in DistributedDataParallel (optionally with SyncBatchNorm), averages the logged losses over ranks,
and only rank 0 writes files. The evaluator runs on every rank (shard the data with ``shard_indices`` and
merge with ``gather_results``); rank 0's metrics are broadcast to all ranks.

Files in ``run_dir``: ``config.yaml`` (resolved configuration), checkpoints (see
:mod:`densevision.engine.checkpoint`), ``log.txt`` (the plain-text log: loss windows, evaluations, checkpoints, the
end of the run or the error that stopped it), ``metrics.json``, ``loss_curve.png``, ``tensorboard/`` (without
the ``tensorboard`` package: skipped, with one line in the log).
"""

from __future__ import annotations

import itertools
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from densevision.engine.checkpoint import Checkpointer
from densevision.engine.config import CONFIG_FILE, plain_value, save_config
from densevision.engine.distributed import (
    all_reduce_mean,
    barrier,
    broadcast_object,
    get_rank,
    get_world_size,
    unwrap_model,
    wrap_model,
)
from densevision.engine.hooks import (
    BestMetricHook,
    CheckpointHook,
    EvalHook,
    HookBase,
    LoggingHook,
    LRSchedulerHook,
)
from densevision.engine.logging import TrainingLogger
from densevision.engine.rng import derive_seed, get_rng_state, seed_everything, set_rng_state
from densevision.errors import DenseVisionError
from densevision.models.checkpoint import load_state_dict_checked

AMP_MODES = ("off", "bf16", "fp16")
LossFn = Callable[[nn.Module, Any], "Mapping[str, torch.Tensor] | torch.Tensor"]
Evaluator = Callable[[nn.Module], Mapping[str, float]]


def move_to_device(obj: Any, device: torch.device) -> Any:
    """Tensors inside nested dicts, lists and tuples moved to ``device`` (non-blocking)."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return {k: move_to_device(v, device) for k, v in obj.items()}
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(move_to_device(v, device) for v in obj))
    if isinstance(obj, list | tuple):
        return type(obj)(move_to_device(v, device) for v in obj)
    return obj


def _batch_iterator(data: Any, start_iter: int) -> Iterator[Any]:
    if hasattr(data, "iter_from"):
        return data.iter_from(start_iter)
    if callable(data):
        return (data(i) for i in itertools.count(start_iter))
    raise DenseVisionError(
        f"training data of type {type(data).__name__} is neither iteration-indexed (iter_from) nor callable"
    )


class Trainer:
    """Trains ``model`` for ``max_iters`` iterations; see the module docstring for the contracts.

    Args:
        model: returns a dict of losses from ``loss_fn(model, batch)``.
        optimizer: built over ``model``'s parameters (e.g. :func:`densevision.engine.build_optimizer`).
        data: iteration-indexed batch provider (``iter_from(i)``) or ``data(i) -> batch``.
        scheduler: per-iteration LR scheduler (e.g. :func:`densevision.engine.build_scheduler`), or None.
        run_dir: where checkpoints and logs go. It must not hold a checkpoint unless ``resume``.
        max_iters: total number of iterations (optimizer steps).
        device: where the model and batches go; None keeps the model where it is.
        amp: ``"off"``, ``"bf16"`` (CPU or CUDA autocast) or ``"fp16"`` (CUDA, with a GradScaler).
        grad_clip: clip the global gradient L2 norm to this value (None: no clipping).
        checkpoint_every / keep_checkpoints: checkpoint period; how many ``iter_*.pt`` to keep (None: all).
        eval_every: evaluation period (0: only after the last iteration); needs ``evaluator``.
        evaluator: ``evaluator(model) -> {metric: value}``, called on every rank with the unwrapped model in
            eval mode under ``torch.no_grad()``; rank 0's result counts.
        best_metric / best_mode: metric that selects ``best.pt``; whether ``"max"`` or ``"min"`` is better.
        log_every: window (iterations) over which logged scalars are averaged.
        config: the run's configuration (dataclass or dict), saved as ``config.yaml`` and in every
            checkpoint.
        model_spec: what rebuilds the model (:func:`densevision.engine.checkpoint.model_spec`), saved in
            every checkpoint.
        seed: base seed for the per-iteration seeding.
        hooks: extra hooks, run after evaluation and before checkpointing.
        loss_fn: ``loss_fn(model, batch) -> losses``; default ``model(batch)``.
        progress / tensorboard: show the tqdm bar / write TensorBoard events (rank 0).
        sync_bn / find_unused_parameters: DistributedDataParallel options (ignored in a single process).
        resume: continue from ``run_dir/last.pt`` when it exists (start fresh when it does not).
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        data: Any,
        *,
        scheduler: torch.optim.lr_scheduler.LRScheduler | None = None,
        run_dir: str | os.PathLike,
        max_iters: int,
        device: str | torch.device | None = None,
        amp: str = "off",
        grad_clip: float | None = None,
        checkpoint_every: int = 1000,
        keep_checkpoints: int | None = None,
        eval_every: int = 0,
        evaluator: Evaluator | None = None,
        best_metric: str | None = None,
        best_mode: str = "max",
        log_every: int = 20,
        config: Mapping[str, Any] | Any = None,
        model_spec: Mapping[str, Any] | None = None,
        seed: int = 0,
        hooks: Sequence[HookBase] = (),
        loss_fn: LossFn | None = None,
        progress: bool = True,
        tensorboard: bool = True,
        sync_bn: bool = False,
        find_unused_parameters: bool = False,
        resume: bool = False,
    ) -> None:
        if max_iters <= 0:
            raise DenseVisionError(f"max_iters must be positive, got {max_iters}")
        if amp not in AMP_MODES:
            raise DenseVisionError(f"unknown AMP mode {amp!r}; choose one of {', '.join(AMP_MODES)}")
        if best_metric is not None and evaluator is None:
            raise DenseVisionError(f"best_metric {best_metric!r} needs an evaluator")
        if device is not None:
            model.to(device)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        if amp == "fp16" and self.device.type != "cuda":
            raise DenseVisionError("fp16 mixed precision needs a CUDA device; use amp 'bf16' on the CPU")
        self.amp_dtype = {"off": None, "bf16": torch.bfloat16, "fp16": torch.float16}[amp]
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=amp == "fp16")

        self.rank = get_rank()
        self.world_size = get_world_size()
        self.is_main = self.rank == 0
        self.model = wrap_model(
            model, self.device, sync_bn=sync_bn, find_unused_parameters=find_unused_parameters
        )
        self.module = unwrap_model(self.model)
        self.optimizer = optimizer
        self.scheduler = scheduler
        self.data = data
        self.loss_fn: LossFn = loss_fn or (lambda m, batch: m(batch))
        self.run_dir = Path(run_dir)
        self.max_iters = max_iters
        self.grad_clip = grad_clip
        self.evaluator = evaluator
        self.config = plain_value(config) if config is not None else {}
        self.model_spec = plain_value(model_spec) if model_spec is not None else None
        self.seed = seed
        self.resume_requested = resume

        self.checkpointer = Checkpointer(self.run_dir, keep=keep_checkpoints)
        self.logger = TrainingLogger(
            self.run_dir, max_iters=max_iters, log_every=log_every, enabled=self.is_main, progress=progress,
            tensorboard=tensorboard,
        )
        self.iter = 0
        self.start_iter = 0
        self.step_scalars: dict[str, float] = {}
        self.metrics: dict[str, float] = {}
        self.metrics_iteration: int | None = None
        self.best: dict[str, Any] | None = None
        self._resumed = False
        self._batches: Iterator[Any] | None = None

        before: list[HookBase] = []
        if scheduler is not None:
            before.append(LRSchedulerHook(scheduler))
        if evaluator is not None:
            before.append(EvalHook(eval_every))
        if best_metric is not None:
            before.append(BestMetricHook(best_metric, best_mode))
        self.hooks: list[HookBase] = []
        self.register_hooks([*before, *hooks, LoggingHook(checkpoint_every), CheckpointHook(checkpoint_every)])

    def register_hooks(self, hooks: Iterable[HookBase]) -> None:
        """Append ``hooks`` (they run in the order given)."""
        for hook in hooks:
            hook.trainer = self
            self.hooks.append(hook)

    def _hook_keys(self) -> list[str]:
        names = [type(hook).__name__ for hook in self.hooks]
        return [name if names.count(name) == 1 else f"{name}.{i}" for i, name in enumerate(names)]

    # ----------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """The full training state after ``self.iter + 1`` iterations (tensors and plain values only)."""
        done = self.iter + 1
        return {
            "model": self.module.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict(),
            "iteration": done,
            "data": {"next_iteration": done, "seed": self.seed, "world_size": self.world_size},
            "rng": get_rng_state(),
            "config": self.config,
            **({"model_spec": self.model_spec} if self.model_spec is not None else {}),
            "best": self.best,
            "metrics": self.metrics,
            "hooks": {key: h.state_dict() for key, h in zip(self._hook_keys(), self.hooks, strict=True)},
        }

    def resume(self, path: str | os.PathLike | None = None) -> int:
        """Load a checkpoint (default ``run_dir/last.pt``) into the model, optimizer, scheduler, scaler,
        generators and hooks; returns the iteration training continues from."""
        source = str(self.checkpointer.last_path if path is None else path)
        state = self.checkpointer.load(path)
        load_state_dict_checked(self.module, state["model"], source)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state.get("scheduler") is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler.is_enabled() and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"])
        hook_states = state.get("hooks", {})
        for key, hook in zip(self._hook_keys(), self.hooks, strict=True):
            if hook_states.get(key):
                hook.load_state_dict(hook_states[key])
        self.best = state.get("best")
        self.metrics = dict(state.get("metrics") or {})
        self.start_iter = int(state["iteration"])
        self._resumed = True
        return self.start_iter

    def _prepare_run_dir(self) -> None:
        if not self._resumed:
            found = broadcast_object(self.checkpointer.has_checkpoint())  # one decision for all ranks
            if found and self.resume_requested:
                self.resume()
            elif found:
                raise DenseVisionError(
                    f"{self.run_dir} already holds a training checkpoint "
                    f"({self.checkpointer.last_path.name}); resume it or choose another run directory"
                )
        if self.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.checkpointer.remove_temporaries()
            save_config(self.config, self.run_dir / CONFIG_FILE)

    # ----------------------------------------------------------------------------------- loop
    def train(self) -> dict[str, Any]:
        """Run iterations ``start_iter..max_iters-1``. Returns ``{"iteration", "losses", "metrics", "best"}``:
        the iterations done, the last logged loss means, the last evaluation and the best one."""
        self._prepare_run_dir()
        self.model.train()
        self._batches = _batch_iterator(self.data, self.start_iter)
        self.iter = self.start_iter - 1
        try:
            for hook in self.hooks:
                hook.before_train()
            for iteration in range(self.start_iter, self.max_iters):
                self.iter = iteration
                for hook in self.hooks:
                    hook.before_step()
                self.run_step()
                for hook in self.hooks:
                    hook.after_step()
        except BaseException as exc:
            self.logger.log(f"stopped: {str(exc) or type(exc).__name__}", echo="never")
            raise
        finally:
            self._batches = None
            for hook in self.hooks:
                hook.after_train()
        barrier()  # ranks leave together: a process group torn down next has no message in flight
        losses = self.logger.history[-1] if self.logger.history else {}
        return {"iteration": self.iter + 1, "losses": losses, "metrics": self.metrics, "best": self.best}

    def run_step(self) -> None:
        """One iteration: batch, seeded forward under autocast, loss check, backward, clipping, step."""
        start = time.perf_counter()
        batch = move_to_device(next(self._batches), self.device)
        data_time = time.perf_counter() - start
        seed_everything(derive_seed(self.seed, self.iter, self.rank))
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            losses = self.loss_fn(self.model, batch)
        if isinstance(losses, torch.Tensor):
            losses = {"loss": losses}
        if not losses:
            raise DenseVisionError(f"the model returned no losses at iteration {self.iter}")
        total = sum(losses.values())
        values = self._reduce_losses(losses, total)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        scalars = dict(values)
        scalars["lr"] = max(group["lr"] for group in self.optimizer.param_groups)
        if self.grad_clip is not None:
            self.scaler.unscale_(self.optimizer)
            params = [p for group in self.optimizer.param_groups for p in group["params"]]
            scalars["grad_norm"] = float(torch.nn.utils.clip_grad_norm_(params, self.grad_clip))
        self.scaler.step(self.optimizer)
        self.scaler.update()
        scalars["time"] = time.perf_counter() - start
        scalars["data_time"] = data_time
        self.step_scalars = scalars

    def put_scalar(self, name: str, value: float) -> None:
        """Add a scalar to this iteration's logged values (for hooks; call before the logging hook runs)."""
        self.step_scalars[name] = float(value)

    def _reduce_losses(self, losses: Mapping[str, torch.Tensor], total: torch.Tensor) -> dict[str, float]:
        """Loss values averaged over ranks; stops the run (on every rank) when any is NaN or infinite."""
        names = [*losses, "total_loss"]
        stacked = torch.stack([v.detach().float().reshape(()) for v in [*losses.values(), total]])
        values = dict(zip(names, all_reduce_mean(stacked).tolist(), strict=True))
        if not all(math.isfinite(v) for v in values.values()):
            last = self.checkpointer.last_path
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was written"
            shown = ", ".join(f"{k}={v:.4g}" for k, v in values.items())
            raise DenseVisionError(
                f"non-finite loss at iteration {self.iter} ({shown}); training stopped and {kept} "
                "(lower the learning rate, clip gradients or check the data)"
            )
        return values

    def evaluate(self) -> dict[str, float]:
        """Run the evaluator on the unwrapped model in eval mode; update ``metrics``."""
        done = self.iter + 1
        module = self.module
        was_training = module.training
        module.eval()
        try:
            with torch.no_grad():
                metrics = self.evaluator(module)
        finally:
            module.train(was_training)
        metrics = broadcast_object(plain_value(dict(metrics or {})) if self.is_main else None)
        self.metrics = metrics
        self.metrics_iteration = done
        self.logger.record_metrics(self.iter, metrics)
        return metrics
