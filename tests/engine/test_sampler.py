"""Iteration-indexed data order: pure in (seed, iteration), epoch coverage, rank sharding, worker-independent
augmentation."""

from __future__ import annotations

import itertools

import pytest
import torch

from densevision.engine import IterationBatchSampler, IterationLoader
from densevision.errors import DataError


def test_batches_are_a_pure_function_of_seed_and_iteration():
    a = IterationBatchSampler(10, 3, seed=7)
    b = IterationBatchSampler(10, 3, seed=7, start_iter=5)
    assert [a.batch(i) for i in range(5, 9)] == list(itertools.islice(b, 4))
    assert IterationBatchSampler(10, 3, seed=8).batch(0) != a.batch(0)


def test_each_epoch_visits_every_sample_once():
    sampler = IterationBatchSampler(6, 4, seed=1)
    stream = [index for i in range(6) for index, _ in sampler.batch(i)]  # 24 positions = 4 epochs
    for epoch in range(4):
        assert sorted(stream[6 * epoch:6 * epoch + 6]) == list(range(6))
    assert stream[:6] != stream[6:12]  # reshuffled every epoch
    ordered = IterationBatchSampler(6, 4, shuffle=False)
    assert [index for index, _ in ordered.batch(1)] == [4, 5, 0, 1]


def test_ranks_split_the_global_batch_of_one_process():
    whole = IterationBatchSampler(9, 4, seed=3)
    ranks = [IterationBatchSampler(9, 2, seed=3, rank=r, world_size=2) for r in range(2)]
    for i in range(7):
        assert ranks[0].batch(i) + ranks[1].batch(i) == whole.batch(i)


class RandomView(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 5

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.rand(2) + index


def test_loader_resumes_mid_stream_and_ignores_worker_count():
    loader = IterationLoader(RandomView(), 2, seed=4)
    head = list(itertools.islice(loader.iter_from(0), 6))
    tail = list(itertools.islice(loader.iter_from(3), 3))
    for a, b in zip(head[3:], tail, strict=True):
        assert torch.equal(a, b)
    workers = IterationLoader(RandomView(), 2, seed=4, num_workers=2)
    for a, b in zip(head, itertools.islice(workers.iter_from(0), 6), strict=True):
        assert torch.equal(a, b)


class _BadSample(torch.utils.data.Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int) -> torch.Tensor:
        if index == 2:
            raise DataError("ann.json: image id 7: image file x.png not found")
        return torch.tensor(index)


@pytest.mark.parametrize("workers", [0, 1])
def test_a_sample_error_in_a_worker_keeps_its_one_line_message(workers):
    batches = IterationLoader(_BadSample(), 4, seed=0, num_workers=workers).iter_from(0)
    with pytest.raises(DataError) as info:
        next(batches)
    assert str(info.value) == "ann.json: image id 7: image file x.png not found"
