"""Optimizers (SGD, AdamW) and iteration-based learning-rate schedules: warm-up, then step, cosine, poly or
constant.

Schedules are :class:`~torch.optim.lr_scheduler.LambdaLR` over :func:`lr_multiplier`, stepped once per
iteration; the multiplier is a closure, so a resumed run follows the schedule flags it is started with while
the scheduler's own state (``last_epoch``, base learning rates) comes from the checkpoint.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Sequence

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from densevision.errors import DenseVisionError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("step", "cosine", "poly", "constant")
WARMUP_METHODS = ("linear", "constant")


def param_groups(model: nn.Module, weight_decay: float, *, filter_bias_and_bn: bool) -> list[dict]:
    """Trainable parameters as optimizer groups.

    With ``filter_bias_and_bn`` the 1-D parameters (biases, norm scales) and the names the model lists in
    ``no_weight_decay()`` (timm convention: position embeddings, relative position tables) get no weight
    decay.
    """
    params = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    if not filter_bias_and_bn:
        return [{"params": [p for _, p in params], "weight_decay": weight_decay}]
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, p in params:
        exempt = p.ndim <= 1 or name.endswith(".bias") or name in skip or name.split(".")[-1] in skip
        (no_decay if exempt else decay).append(p)
    return [{"params": no_decay, "weight_decay": 0.0}, {"params": decay, "weight_decay": weight_decay}]


def build_optimizer(
    model: nn.Module,
    *,
    name: str = "sgd",
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.9,
    nesterov: bool = False,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    filter_bias_and_bn: bool = False,
) -> torch.optim.Optimizer:
    """SGD (``momentum``, ``nesterov``) or AdamW (``betas``, ``eps``, decoupled ``weight_decay``) over the
    model's trainable parameters; see :func:`param_groups` for ``filter_bias_and_bn``."""
    groups = param_groups(model, weight_decay, filter_bias_and_bn=filter_bias_and_bn)
    if not any(group["params"] for group in groups):
        raise DenseVisionError(f"{type(model).__name__} has no trainable parameters to optimize")
    groups = [group for group in groups if group["params"]]
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=betas, eps=eps)
    raise DenseVisionError(f"unknown optimizer {name!r}; choose one of {', '.join(OPTIMIZERS)}")


def lr_multiplier(
    iteration: int,
    *,
    max_iters: int,
    schedule: str = "step",
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
    warmup_method: str = "linear",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> float:
    """Factor on the base learning rate at ``iteration`` (0-based).

    Main schedule: ``step`` multiplies by ``gamma`` at each of ``milestones``; ``cosine`` decays from 1 to
    ``min_lr_ratio`` over ``max_iters``; ``poly`` is ``(1 - t / max_iters) ** power``, floored at
    ``min_lr_ratio``; ``constant`` is 1. During the first ``warmup_iters`` it is further multiplied by a
    warm-up factor that rises linearly from ``warmup_factor`` to 1 (or stays at ``warmup_factor`` for
    ``constant`` warm-up), as in detectron2.
    """
    t = min(iteration, max_iters)
    if schedule == "step":
        factor = gamma ** bisect_right(sorted(milestones), t)
    elif schedule == "cosine":
        factor = min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t / max_iters))
    elif schedule == "poly":
        factor = max((1.0 - t / max_iters) ** power, min_lr_ratio)
    elif schedule == "constant":
        factor = 1.0
    else:
        raise DenseVisionError(f"unknown LR schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if t < warmup_iters:
        if warmup_method == "linear":
            alpha = t / warmup_iters
            factor *= warmup_factor * (1.0 - alpha) + alpha
        elif warmup_method == "constant":
            factor *= warmup_factor
        else:
            raise DenseVisionError(
                f"unknown warm-up method {warmup_method!r}; choose one of {', '.join(WARMUP_METHODS)}"
            )
    return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    *,
    max_iters: int,
    schedule: str = "step",
    warmup_iters: int = 0,
    warmup_factor: float = 0.001,
    warmup_method: str = "linear",
    milestones: Sequence[int] = (),
    gamma: float = 0.1,
    power: float = 0.9,
    min_lr_ratio: float = 0.0,
) -> LambdaLR:
    """A per-iteration :class:`LambdaLR` following :func:`lr_multiplier` (same keyword arguments)."""
    if max_iters <= 0:
        raise DenseVisionError(f"max_iters must be positive, got {max_iters}")
    if schedule not in SCHEDULES:
        raise DenseVisionError(f"unknown LR schedule {schedule!r}; choose one of {', '.join(SCHEDULES)}")
    if warmup_method not in WARMUP_METHODS:
        raise DenseVisionError(
            f"unknown warm-up method {warmup_method!r}; choose one of {', '.join(WARMUP_METHODS)}"
        )
    bad = [m for m in milestones if not 0 < m < max_iters]
    if schedule == "step" and bad:
        raise DenseVisionError(f"LR milestones {bad} lie outside (0, max_iters={max_iters})")
    options = dict(
        max_iters=max_iters, schedule=schedule, warmup_iters=warmup_iters, warmup_factor=warmup_factor,
        warmup_method=warmup_method, milestones=tuple(milestones), gamma=gamma, power=power,
        min_lr_ratio=min_lr_ratio,
    )

    def multiplier(iteration: int) -> float:
        return lr_multiplier(iteration, **options)

    return LambdaLR(optimizer, multiplier)
