"""Checkpoint files: atomic publication of last.pt / best.pt, pruning, clean-up, safe loading."""

from __future__ import annotations

import os

import pytest
import torch

from densevision.engine import Checkpointer
from densevision.errors import CheckpointError


def state(iteration: int) -> dict:
    return {"model": {"w": torch.full((2,), float(iteration))}, "iteration": iteration}


def test_save_publishes_last_and_best(tmp_path):
    ckpt = Checkpointer(tmp_path)
    assert not ckpt.has_checkpoint()
    ckpt.save(state(2), 2, best=True)
    ckpt.save(state(4), 4)
    assert ckpt.has_checkpoint()
    assert ckpt.load()["iteration"] == 4
    assert ckpt.load(ckpt.best_path)["iteration"] == 2
    assert [p.name for p in ckpt.periodic_paths()] == ["iter_0000002.pt", "iter_0000004.pt"]
    assert os.path.samefile(ckpt.last_path, ckpt.iteration_path(4))  # a link, not a second serialisation


def test_best_only_save_leaves_last_alone(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(state(2), 2)
    ckpt.save(state(3), 3, last=False, best=True)
    assert ckpt.load()["iteration"] == 2
    assert ckpt.load(ckpt.best_path)["iteration"] == 3
    assert [p.name for p in ckpt.periodic_paths()] == ["iter_0000002.pt"]


def test_keep_prunes_old_periodic_files_only(tmp_path):
    ckpt = Checkpointer(tmp_path, keep=2)
    ckpt.save(state(1), 1, best=True)
    for it in (2, 3, 4):
        ckpt.save(state(it), it)
    assert [p.name for p in ckpt.periodic_paths()] == ["iter_0000003.pt", "iter_0000004.pt"]
    assert ckpt.load(ckpt.best_path)["iteration"] == 1
    with pytest.raises(CheckpointError, match="keep must be at least 1"):
        Checkpointer(tmp_path, keep=0)


def test_remove_temporaries_of_a_killed_writer(tmp_path):
    ckpt = Checkpointer(tmp_path)
    ckpt.save(state(1), 1)
    (tmp_path / ".iter_0000002.pt.abc123.tmp").write_bytes(b"half")
    ckpt.remove_temporaries()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["iter_0000001.pt", "last.pt"]


def test_load_errors_name_the_file(tmp_path):
    ckpt = Checkpointer(tmp_path)
    with pytest.raises(CheckpointError, match="last.pt: checkpoint file not found"):
        ckpt.load()
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="other.pt: not a densevision training checkpoint"):
        ckpt.load(tmp_path / "other.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="broken.pt"):
        ckpt.load(tmp_path / "broken.pt")
