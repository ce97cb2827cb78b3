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


def test_find_checkpoint_prefers_best_then_last(tmp_path):
    from densevision.engine.checkpoint import find_checkpoint

    with pytest.raises(CheckpointError, match="checkpoint file or run directory not found"):
        find_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="holds no best.pt or last.pt"):
        find_checkpoint(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "last.pt"
    (tmp_path / "best.pt").write_bytes(b"")
    assert find_checkpoint(tmp_path) == tmp_path / "best.pt"
    assert find_checkpoint(tmp_path / "last.pt") == tmp_path / "last.pt"


def test_model_specs_of_shipped_weights_and_of_new_checkpoints():
    from densevision.demo import ASSETS
    from densevision.engine.checkpoint import model_spec, read_model_spec
    from densevision.models.checkpoint import read_checkpoint

    detector = read_model_spec(read_checkpoint(ASSETS / "demo_detector.pt"), "det")
    assert detector["builder"] == "mask_rcnn" and detector["config"]["num_classes"] == 5
    assert [c["name"] for c in detector["meta"]["categories"]][:2] == ["triangle", "square"]
    refiner = read_model_spec(read_checkpoint(ASSETS / "demo_refiner.pt"), "ref")
    assert refiner["builder"] == "refine_net" and refiner["config"]["input_size"] == 64
    spec = model_spec("refine_net", {"input_size": 32}, {"note": 1})
    assert read_model_spec({"model": {}, "model_spec": spec, "config": {"bpr_model": {}}}, "x") == spec
    assert read_model_spec({"model": {}, "config": {}}, "x") is None
    with pytest.raises(CheckpointError, match="x: malformed model_spec"):
        read_model_spec({"model_spec": {"builder": 3}}, "x")


def test_resolve_device():
    import torch

    from densevision.engine.device import resolve_device
    from densevision.errors import DenseVisionError

    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(DenseVisionError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
