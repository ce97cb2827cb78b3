"""Deterministic seeding and random-number-generator state as checkpoint-safe plain data.

Training draws randomness from streams keyed by ``(seed, iteration, ...)`` (:func:`derive_seed`), so a
resumed run does not depend on how far any generator had advanced before the interruption. The full generator
states are still captured in every checkpoint (:func:`get_rng_state`) as tensors and plain Python values,
which ``torch.load(weights_only=True)`` reads back.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch


def derive_seed(seed: int, *keys: int) -> int:
    """A 32-bit seed that is a pure function of ``seed`` and ``keys`` (e.g. iteration, rank), well mixed so
    that neighbouring keys give unrelated streams."""
    return int(np.random.SeedSequence([seed, *keys]).generate_state(1)[0])


def seed_everything(seed: int, *, deterministic: bool = False) -> None:
    """Seed Python's, NumPy's and torch's global generators (all CUDA devices included).

    ``deterministic=True`` also asks cuDNN for deterministic kernels (slower; CPU kernels already are).
    """
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False


def get_rng_state() -> dict[str, Any]:
    """The state of every global generator, as tensors and plain Python values."""
    version, internal, gauss = random.getstate()
    name, keys, pos, has_gauss, cached = np.random.get_state(legacy=True)
    state: dict[str, Any] = {
        "python": {"version": version, "state": list(internal), "gauss": gauss},
        "numpy": {
            "bit_generator": str(name),
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore the generators saved by :func:`get_rng_state` (CUDA states only when CUDA is in use)."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    npy = state["numpy"]
    np.random.set_state(
        (npy["bit_generator"], npy["keys"].numpy().astype(np.uint32), npy["pos"], npy["has_gauss"],
         npy["cached_gaussian"])
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        for index, cuda_state in enumerate(cuda_states):
            torch.cuda.set_rng_state(cuda_state, index)
