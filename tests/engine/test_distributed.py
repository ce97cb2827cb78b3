"""Distributed helpers in a single process, and two gloo processes training with DistributedDataParallel."""

from __future__ import annotations

import socket

import torch

from densevision.engine import (
    all_gather_objects,
    broadcast_object,
    gather_results,
    get_rank,
    get_world_size,
    init_distributed,
    is_distributed,
    is_main_process,
    shard_indices,
    unwrap_model,
)
from densevision.engine.distributed import all_reduce_mean, wrap_model


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_single_process_defaults(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = init_distributed("cpu")
    assert (info.rank, info.world_size, info.local_rank, info.device) == (0, 1, 0, torch.device("cpu"))
    assert not is_distributed() and is_main_process() and get_rank() == 0 and get_world_size() == 1
    assert all_gather_objects({"a": 1}) == [{"a": 1}]
    assert gather_results([1, 2]) == [1, 2]
    assert broadcast_object("x") == "x"
    t = torch.tensor([1.0, 2.0])
    assert torch.equal(all_reduce_mean(t), t)
    model = torch.nn.Linear(2, 2)
    assert wrap_model(model, torch.device("cpu"), sync_bn=True) is model
    assert unwrap_model(model) is model


def test_shard_indices_partition_without_padding():
    shards = [list(shard_indices(7, rank, 3)) for rank in range(3)]
    assert shards == [[0, 3, 6], [1, 4], [2, 5]]
    assert list(shard_indices(5)) == [0, 1, 2, 3, 4]


def test_two_gloo_processes_end_with_identical_weights_equal_to_one_process(tmp_path, tiny, start_tiny):
    port = str(free_port())
    out = tmp_path / "final.pt"
    args = [str(tmp_path / "ddp"), "--max-iters", "6", "--batch-size", "2", "--no-batch-norm",
            "--dropout", "0", "--out", str(out)]
    procs = [
        start_tiny(*args, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1",
                   MASTER_PORT=port)
        for rank in range(2)
    ]
    for proc in procs:
        proc.wait(timeout=300)
        assert proc.returncode == 0, proc.stderr.read()
    rank0 = torch.load(f"{out}.rank0", weights_only=True)
    rank1 = torch.load(f"{out}.rank1", weights_only=True)
    for key, value in rank0["model"].items():
        assert torch.equal(value, rank1["model"][key]), key
    # distributed evaluation: each rank scored its shard, the lists were gathered and rank 0's metrics shared
    assert rank0["result"]["metrics"]["num_eval"] == rank1["result"]["metrics"]["num_eval"] == 7
    losses0, losses1 = rank0["result"]["losses"], rank1["result"]["losses"]
    assert losses0["total_loss"] == losses1["total_loss"]  # logged losses are averaged over ranks
    assert (tmp_path / "ddp" / "last.pt").is_file()

    # 2 ranks × batch 2 draw the same global batches as 1 process × batch 4: same training up to rounding
    single, _, _ = tiny.run_tiny(tmp_path / "single", max_iters=6, batch_size=4, batch_norm=False,
                                 dropout=0.0)
    for key, value in single.state_dict().items():
        torch.testing.assert_close(rank0["model"][key], value, rtol=1e-5, atol=1e-6)
