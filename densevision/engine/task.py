"""The task contract: what a task (detection, refinement, ...) provides so that
:func:`densevision.engine.train_task` can train it.

A task object is built from its typed recipe (a dataclass with a ``train:``
:class:`~densevision.engine.TrainConfig` section) and is asked, in this order:

1. ``build_train_data()``: the training data set, validated (no file is written before this succeeds);
2. ``build_model()``: the network, after the engine seeded the generators with ``train.seed``;
3. ``loss(model, batch)``: a dict of scalar losses for one batch;
4. ``build_evaluator(run_dir)``: ``evaluator(model) -> metrics`` (usually :func:`inference_on_dataset`
   over a :class:`~densevision.engine.DatasetEvaluator`), or None without validation data;
5. ``model_spec(model)``: the checkpoint section the model is rebuilt from
   (:func:`densevision.engine.checkpoint.model_spec`).

Optional: ``build_optimizer(model) -> (optimizer, scheduler)`` replaces the default SGD with
``train``'s schedule; ``sync_bn = True`` turns BatchNorm into SyncBatchNorm when training under DDP.

``best_metric`` names the metric (higher is better) that selects ``best.pt``; ``collate_fn`` batches the
training samples (None: PyTorch's default); an optional ``optimizer`` attribute names the optimizer of
:func:`~densevision.engine.optim.build_optimizer` (default ``"sgd"``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn
from torch.utils.data import Dataset


class Task(Protocol):
    config: Any
    best_metric: str | None
    collate_fn: Callable[[list[Any]], Any] | None

    def build_train_data(self) -> Dataset: ...

    def build_model(self) -> nn.Module: ...

    def loss(self, model: nn.Module, batch: Any) -> Mapping[str, torch.Tensor]: ...

    def build_evaluator(self, run_dir: Path, device: torch.device) -> Callable[[nn.Module], Mapping[str, float]] | None:
        ...

    def model_spec(self, model: nn.Module) -> dict[str, Any]: ...
