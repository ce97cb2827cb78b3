"""The training engine shared by every trainable model: typed configs, the task contract and its training
entry, trainer and hooks, checkpoints and model specs, evaluators, optimizers and LR schedules,
iteration-indexed data order, distributed helpers and run logging.

Names are imported lazily from their modules, so ``densevision.engine.config`` loads without torch.
"""

from __future__ import annotations

from densevision.lazy import lazy_exports

_EXPORTS = {
    "checkpoint": ("Checkpointer", "find_checkpoint", "model_spec", "read_model_spec"),
    "config": (
        "TrainConfig", "add_config_flags", "apply_overrides", "config_from_args", "from_dict", "load_config",
        "save_config", "to_dict",
    ),
    "device": ("resolve_device",),
    "distributed": (
        "DistInfo", "all_gather_objects", "barrier", "broadcast_object", "destroy_distributed", "gather_results",
        "get_rank", "get_world_size", "init_distributed", "is_distributed", "is_main_process", "shard_indices",
        "unwrap_model",
    ),
    "evaluator": ("DatasetEvaluator", "inference_on_dataset"),
    "hooks": ("BestMetricHook", "CheckpointHook", "EvalHook", "HookBase", "LoggingHook", "LRSchedulerHook"),
    "logging": ("TrainingLogger", "plot_loss_curve"),
    "optim": ("build_optimizer", "build_scheduler", "lr_multiplier"),
    "rng": ("derive_seed", "get_rng_state", "seed_everything", "set_rng_state"),
    "sampler": ("IterationBatchSampler", "IterationLoader", "SeededDataset"),
    "task": ("Task",),
    "train": ("train_task",),
    "trainer": ("Trainer", "move_to_device"),
}
__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
