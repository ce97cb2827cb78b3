"""Iteration-indexed data order: the batch of iteration ``i`` is a pure function of ``(seed, i)``.

The samples form one endless stream of positions ``p = 0, 1, 2, ...``: position ``p`` is element ``p % N``
of the shuffled order of epoch ``p // N`` (a permutation seeded by ``(seed, epoch)``). Iteration ``i``
consumes the global batch of positions ``[i·B·W, (i+1)·B·W)`` for a per-process batch ``B`` and ``W``
processes; rank ``r`` takes the ``r``-th slice of ``B``. Every sample also carries a seed derived from
``(seed, p)`` and :class:`SeededDataset` seeds the generators with it before loading, so random augmentation
does not depend on which worker process loads it. Resuming at iteration ``i`` therefore only needs ``i``: no
sampler or worker state has to be saved, and ``W`` ranks with batch ``B`` see the same global batches as one
process with batch ``B·W``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
from torch.utils.data import Dataset

from densevision.data.loader import OneLineErrorLoader
from densevision.engine.distributed import get_rank, get_world_size
from densevision.engine.rng import derive_seed, seed_everything
from densevision.errors import DenseVisionError

_SAMPLE_STREAM = 1  # key that separates sample seeds from epoch-permutation seeds


class IterationBatchSampler:
    """Yields, for iterations ``start_iter, start_iter + 1, ...`` (endlessly), this rank's list of
    ``(dataset index, sample seed)`` pairs."""

    def __init__(
        self,
        dataset_size: int,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        rank: int = 0,
        world_size: int = 1,
        start_iter: int = 0,
    ) -> None:
        if dataset_size <= 0:
            raise DenseVisionError("the training data set is empty: no samples to draw batches from")
        if batch_size <= 0:
            raise DenseVisionError(f"batch size must be positive, got {batch_size}")
        self.dataset_size = dataset_size
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.start_iter = start_iter
        self._orders: dict[int, np.ndarray] = {}

    def _order(self, epoch: int) -> np.ndarray:
        if epoch not in self._orders:
            if len(self._orders) >= 2:
                self._orders.pop(min(self._orders))
            if self.shuffle:
                rng = np.random.default_rng(derive_seed(self.seed, epoch))
                self._orders[epoch] = rng.permutation(self.dataset_size)
            else:
                self._orders[epoch] = np.arange(self.dataset_size)
        return self._orders[epoch]

    def batch(self, iteration: int) -> list[tuple[int, int]]:
        """This rank's ``(index, sample seed)`` pairs for ``iteration``."""
        first = (iteration * self.world_size + self.rank) * self.batch_size
        items = []
        for position in range(first, first + self.batch_size):
            epoch, offset = divmod(position, self.dataset_size)
            index = int(self._order(epoch)[offset])
            items.append((index, derive_seed(self.seed, _SAMPLE_STREAM, position)))
        return items

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        iteration = self.start_iter
        while True:
            yield self.batch(iteration)
            iteration += 1


class SeededDataset(Dataset):
    """Wraps a map-style dataset so that ``dataset[(index, seed)]`` seeds Python, NumPy and torch with
    ``seed`` and returns ``dataset[index]``: random transforms become a function of the sample seed."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, int]) -> Any:
        index, seed = item
        seed_everything(seed)
        return self.dataset[index]


class IterationLoader:
    """Batch provider for :class:`densevision.engine.Trainer`: ``iter_from(i)`` yields the batches of
    iterations ``i, i + 1, ...`` through a :class:`~densevision.data.loader.OneLineErrorLoader` (worker
    processes, pinned memory; a sample's ``DenseVisionError`` is raised with its one-line message).

    ``rank``/``world_size`` default to the current process group; ``batch_size`` is per process.
    """

    def __init__(
        self,
        dataset: Dataset | Sequence,
        batch_size: int,
        *,
        seed: int = 0,
        shuffle: bool = True,
        collate_fn: Callable[[list], Any] | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        rank: int | None = None,
        world_size: int | None = None,
    ) -> None:
        self.dataset = dataset
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = shuffle
        self.collate_fn = collate_fn
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.rank = get_rank() if rank is None else rank
        self.world_size = get_world_size() if world_size is None else world_size

    def sampler(self, start_iter: int = 0) -> IterationBatchSampler:
        """The batch sampler that starts at ``start_iter``."""
        return IterationBatchSampler(
            len(self.dataset), self.batch_size, seed=self.seed, shuffle=self.shuffle, rank=self.rank,
            world_size=self.world_size, start_iter=start_iter,
        )

    def iter_from(self, start_iter: int) -> Iterator[Any]:
        """Batches of iterations ``start_iter, start_iter + 1, ...``; endless."""
        loader = OneLineErrorLoader(
            SeededDataset(self.dataset),
            batch_sampler=self.sampler(start_iter),
            collate_fn=self.collate_fn,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
        )
        return iter(loader)
