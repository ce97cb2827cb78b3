"""The evaluator protocol: a :class:`DatasetEvaluator` is reset, fed batches of inputs and the model's outputs,
and asked for metrics; :func:`inference_on_dataset` runs a model over a loader into one (detectron2's split).

Under torchrun every rank runs its shard of the data; ``evaluate`` gathers on rank 0 (e.g. with
:func:`densevision.engine.gather_results`), which returns the metrics, the other ranks ``{}``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol, runtime_checkable

import torch
from torch import nn


@runtime_checkable
class DatasetEvaluator(Protocol):
    """Accumulates predictions over a data set and scores them."""

    def reset(self) -> None:
        """Forget what earlier ``process`` calls accumulated."""

    def process(self, inputs: Any, outputs: Any) -> None:
        """Take one batch: what the loader gave and what the model returned for it."""

    def evaluate(self) -> Mapping[str, float]:
        """Metrics over everything processed (``{}`` on ranks other than 0)."""


def inference_on_dataset(
    model: nn.Module,
    loader: Iterable[Any],
    evaluator: DatasetEvaluator,
    *,
    forward: Callable[[nn.Module, Any], Any] | None = None,
) -> dict[str, float]:
    """Run ``forward(model, batch)`` (default ``model(batch)``) over ``loader`` in eval mode without
    gradients, feed each batch and its outputs to ``evaluator``, return its metrics. The model's training
    mode is restored afterwards."""
    forward = forward or (lambda m, batch: m(batch))
    was_training = model.training
    model.eval()
    evaluator.reset()
    try:
        with torch.no_grad():
            for batch in loader:
                evaluator.process(batch, forward(model, batch))
    finally:
        model.train(was_training)
    return dict(evaluator.evaluate())
