"""Fixtures of the engine tests: the tiny training script, loaded as a module and run as a subprocess."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest
import torch

TINY_SCRIPT = Path(__file__).with_name("tiny_training.py")
REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def tiny() -> ModuleType:
    """``tests/engine/tiny_training.py`` as a module (``run_tiny``, ``TinyNet``, ``JitterDataset``...)."""
    spec = importlib.util.spec_from_file_location("engine_tiny_training", TINY_SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def subprocess_env(**extra: str) -> dict[str, str]:
    """The test process's environment with the same torch thread count (bitwise-equal CPU results) and the
    repository importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = str(torch.get_num_threads())
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


@pytest.fixture
def start_tiny() -> Callable[..., subprocess.Popen]:
    """Start ``tiny_training.py ARGS...`` as a subprocess (stdout discarded, stderr kept); it is killed at
    teardown if still running."""
    procs: list[subprocess.Popen] = []

    def start(*args: str, **env: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, str(TINY_SCRIPT), *args], env=subprocess_env(**env),
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
