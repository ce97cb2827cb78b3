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


def no_weight_decay_patterns(model: nn.Module) -> set[str]:
    """The model's ``no_weight_decay()`` names (timm convention: position embeddings, relative position tables)
    as :func:`fnmatch` patterns; a plain name also matches as the last part of a longer one (``pos_embed``
    matches ``backbone.pos_embed``)."""
    names = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    return names | {f"*.{name}" for name in names if "." not in name}


def param_groups(
    model: nn.Module, weight_decay: float, *, filter_bias_and_bn: bool, layer_decay: float | None = None
) -> list[dict]:
    """Trainable parameters as optimizer groups.

    With ``filter_bias_and_bn`` the 1-D parameters (biases, norm scales) and the model's ``no_weight_decay()``
    names get no weight decay (timm's :func:`~timm.optim.param_groups_weight_decay`). ``layer_decay`` (implies
    ``filter_bias_and_bn``) also scales each group's learning rate by ``layer_decay ** (depth − layer)`` over
    the layers of the model's ``group_matcher()`` (timm's :func:`~timm.optim.param_groups_layer_decay`): the
    groups carry ``lr_scale``.
    """
    from timm.optim import param_groups_layer_decay, param_groups_weight_decay

    if layer_decay is not None:
        return param_groups_layer_decay(
            model, weight_decay, no_weight_decay_list=no_weight_decay_patterns(model), layer_decay=layer_decay
        )
    if not filter_bias_and_bn:
        return [{"params": [p for p in model.parameters() if p.requires_grad], "weight_decay": weight_decay}]
    return param_groups_weight_decay(model, weight_decay, no_weight_decay_list=no_weight_decay_patterns(model))


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
    layer_decay: float | None = None,
) -> torch.optim.Optimizer:
    """SGD (``momentum``, ``nesterov``) or AdamW (``betas``, ``eps``, decoupled ``weight_decay``) over the
    model's trainable parameters; see :func:`param_groups` for ``filter_bias_and_bn`` and ``layer_decay``
    (each group's ``lr`` is ``lr`` times its ``lr_scale``, so the schedulers scale the decayed rates)."""
    groups = param_groups(model, weight_decay, filter_bias_and_bn=filter_bias_and_bn, layer_decay=layer_decay)
    groups = [group for group in groups if group["params"]]
    if not groups:
        raise DenseVisionError(f"{type(model).__name__} has no trainable parameters to optimize")
    for group in groups:
        if "lr_scale" in group:
            group["lr"] = lr * group["lr_scale"]
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
