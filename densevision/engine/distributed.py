"""Multi-process training helpers: process-group set-up from torchrun's environment, rank queries, model
wrapping (DistributedDataParallel, SyncBatchNorm) and gathering Python objects for distributed evaluation.

Every helper also works without a process group (a single process is rank 0 of a world of size 1), so task
code calls them unconditionally.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from densevision.engine.device import resolve_device


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: global ``rank``, ``world_size``, ``local_rank`` on its node, and the
    ``device`` it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device


def init_distributed(device: str | torch.device = "auto", *, timeout_s: float = 1800.0) -> DistInfo:
    """Join the process group described by torchrun's variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``MASTER_ADDR``, ``MASTER_PORT``), with NCCL on CUDA and gloo on CPU.

    ``device="auto"`` picks CUDA when available. Under torchrun each process takes ``cuda:LOCAL_RANK``.
    Without those variables (a plain ``python`` run) no group is created and the process is rank 0 of 1.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device)
    if device.type == "cuda":
        if world_size > 1 or device.index is None:
            device = torch.device("cuda", local_rank if world_size > 1 else torch.cuda.current_device())
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(
            backend, rank=rank, world_size=world_size, timeout=datetime.timedelta(seconds=timeout_s),
            device_id=device if device.type == "cuda" else None,
        )
    return DistInfo(rank=get_rank(), world_size=get_world_size(), local_rank=local_rank, device=device)


def destroy_distributed() -> None:
    """Leave the process group, if any."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def is_distributed() -> bool:
    """True inside a process group of more than one process."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def get_rank() -> int:
    """This process's global rank (0 without a process group)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def get_world_size() -> int:
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_main_process() -> bool:
    """True on rank 0, the process that logs and writes files."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every process (no-op in a single process)."""
    if is_distributed():
        dist.barrier()


def all_gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (any picklable value), in rank order, on every rank."""
    if not is_distributed():
        return [obj]
    gathered: list[Any] = [None] * get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def gather_results(results: Sequence[Any]) -> list[Any]:
    """Concatenate each rank's list of results (e.g. per-image detections), rank 0's first, on every rank."""
    return [item for part in all_gather_objects(list(results)) for item in part]


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``obj`` on every rank."""
    if not is_distributed():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The element-wise mean of ``tensor`` over ranks (a new tensor; the input is left as it was)."""
    if not is_distributed():
        return tensor.clone()
    out = tensor.clone()
    dist.all_reduce(out)
    return out / get_world_size()


def shard_indices(num_items: int, rank: int | None = None, world_size: int | None = None) -> range:
    """Items ``rank, rank + W, rank + 2W, ...`` of ``num_items``: each item on exactly one rank, no padding
    (for evaluation, where duplicated samples would bias metrics)."""
    rank = get_rank() if rank is None else rank
    world_size = get_world_size() if world_size is None else world_size
    return range(rank, num_items, world_size)


def wrap_model(
    model: nn.Module, device: torch.device, *, sync_bn: bool = False, find_unused_parameters: bool = False
) -> nn.Module:
    """Wrap ``model`` in DistributedDataParallel when running distributed (else return it unchanged).

    ``sync_bn`` converts BatchNorm layers to SyncBatchNorm first; the parameters stay the same objects, so an
    optimizer built earlier keeps working.
    """
    if not is_distributed():
        return model
    if sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
    device_ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(
        model, device_ids=device_ids, find_unused_parameters=find_unused_parameters
    )


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, DistributedDataParallel) else model
