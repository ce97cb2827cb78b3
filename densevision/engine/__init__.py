"""The training engine shared by every trainable model: trainer and hooks, checkpoints, optimizers and LR
schedules, iteration-indexed data order, distributed helpers, YAML configs and run logging."""

from densevision.engine.checkpoint import Checkpointer
from densevision.engine.config import (
    add_config_argument,
    load_config,
    parse_with_config,
    resolved_config,
    save_config,
)
from densevision.engine.distributed import (
    DistInfo,
    all_gather_objects,
    barrier,
    broadcast_object,
    destroy_distributed,
    gather_results,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    shard_indices,
    unwrap_model,
)
from densevision.engine.logging import TrainingLogger, plot_loss_curve
from densevision.engine.optim import build_optimizer, build_scheduler, lr_multiplier
from densevision.engine.rng import derive_seed, get_rng_state, seed_everything, set_rng_state
from densevision.engine.sampler import IterationBatchSampler, IterationLoader, SeededDataset
from densevision.engine.trainer import (
    CheckpointHook,
    EvalHook,
    HookBase,
    LoggingHook,
    LRSchedulerHook,
    Trainer,
    move_to_device,
)

__all__ = [
    "CheckpointHook",
    "Checkpointer",
    "DistInfo",
    "EvalHook",
    "HookBase",
    "IterationBatchSampler",
    "IterationLoader",
    "LRSchedulerHook",
    "LoggingHook",
    "SeededDataset",
    "Trainer",
    "TrainingLogger",
    "add_config_argument",
    "all_gather_objects",
    "barrier",
    "broadcast_object",
    "build_optimizer",
    "build_scheduler",
    "derive_seed",
    "destroy_distributed",
    "gather_results",
    "get_rank",
    "get_rng_state",
    "get_world_size",
    "init_distributed",
    "is_distributed",
    "is_main_process",
    "load_config",
    "lr_multiplier",
    "move_to_device",
    "parse_with_config",
    "plot_loss_curve",
    "resolved_config",
    "save_config",
    "seed_everything",
    "set_rng_state",
    "shard_indices",
    "unwrap_model",
]
