"""Training checkpoints in a run directory, written atomically, read with ``torch.load(weights_only=True)``.

Layout of ``run_dir``::

    iter_0005000.pt   full training state after 5000 iterations (one per checkpoint period; ``keep`` prunes)
    last.pt           the newest of those (a hard link, replaced atomically)
    best.pt           the state at the best evaluation so far

A file is first written to a temporary sibling, fsynced and renamed into place
(:func:`densevision.io.save_torch`), so a process killed at any moment leaves every checkpoint either complete
or as it was. The state is a dict of tensors and plain Python values; see ``Trainer.state_dict`` for its keys.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

from densevision.errors import CheckpointError
from densevision.io import atomic_open, save_torch
from densevision.models.checkpoint import load_state_dict_checked, read_checkpoint, unwrap_state_dict

LAST = "last.pt"
BEST = "best.pt"
_PERIODIC = re.compile(r"^iter_(\d{7,})\.pt$")


def _publish(source: Path, target: Path) -> None:
    """Atomically replace ``target`` with ``source``'s content: a hard link when the file system allows one,
    otherwise an atomic copy."""
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.unlink(tmp)
    try:
        os.link(source, tmp)
    except OSError:
        with open(source, "rb") as src, atomic_open(target, "wb") as dst:
            shutil.copyfileobj(src, dst)
        return
    try:
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


class Checkpointer:
    """Saves and finds training checkpoints in ``run_dir``; ``keep`` limits how many periodic
    ``iter_*.pt`` files are kept (``None``: all). ``last.pt`` and ``best.pt`` are never pruned."""

    def __init__(self, run_dir: str | os.PathLike, *, keep: int | None = None) -> None:
        if keep is not None and keep < 1:
            raise CheckpointError(f"keep must be at least 1 (or None for all), got {keep}")
        self.run_dir = Path(run_dir)
        self.keep = keep

    @property
    def last_path(self) -> Path:
        return self.run_dir / LAST

    @property
    def best_path(self) -> Path:
        return self.run_dir / BEST

    def iteration_path(self, iteration: int) -> Path:
        return self.run_dir / f"iter_{iteration:07d}.pt"

    def periodic_paths(self) -> list[Path]:
        """The ``iter_*.pt`` files, oldest first."""
        found = [p for p in self.run_dir.glob("iter_*.pt") if _PERIODIC.match(p.name)]
        return sorted(found, key=lambda p: int(_PERIODIC.match(p.name).group(1)))

    def has_checkpoint(self) -> bool:
        return self.last_path.is_file()

    def save(self, state: dict[str, Any], iteration: int, *, last: bool = True, best: bool = False) -> Path:
        """Write ``state``. With ``last``: as ``iter_<iteration>.pt``, published as ``last.pt`` (and as
        ``best.pt`` when ``best``); otherwise only ``best.pt`` is written. Returns the path written."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if not last:
            if best:
                save_torch(self.best_path, state)
            return self.best_path
        path = self.iteration_path(iteration)
        save_torch(path, state)
        _publish(path, self.last_path)
        if best:
            _publish(path, self.best_path)
        if self.keep is not None:
            for old in self.periodic_paths()[: -self.keep]:
                old.unlink()
        return path

    def load(self, path: str | os.PathLike | None = None) -> dict[str, Any]:
        """Read a checkpoint (default ``last.pt``) with ``torch.load(weights_only=True)`` on the CPU."""
        path = self.last_path if path is None else Path(path)
        state = read_checkpoint(path)
        missing = [key for key in ("model", "iteration") if key not in state]
        if missing:
            raise CheckpointError(f"{path}: not a densevision training checkpoint (no {', '.join(missing)})")
        return state

    def remove_temporaries(self) -> None:
        """Delete temporary files that a killed process left half-written."""
        for tmp in self.run_dir.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


# ------------------------------------------------------------------------------------------- model spec
MODEL_SPEC = "model_spec"
# Checkpoints of earlier versions described their model in a section of their config.
_LEGACY_SECTIONS = {"detector": "mask_rcnn", "bpr_model": "refine_net"}


def model_spec(builder: str, config: dict[str, Any], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """The checkpoint section a model is rebuilt from: ``{"builder": name, "config": builder config, "meta":
    {...}}`` (``meta``: e.g. the categories of a detector)."""
    return {"builder": builder, "config": dict(config), "meta": dict(meta or {})}


def read_model_spec(state: dict[str, Any], source: str) -> dict[str, Any] | None:
    """The model spec of a checkpoint, also of one written before specs existed (``config["detector"]``:
    ``{"model", "categories"}``; ``config["bpr_model"]``: the network's arguments); None when it has none."""
    spec = state.get(MODEL_SPEC)
    if spec is not None:
        if not isinstance(spec, dict) or not isinstance(spec.get("builder"), str) or not isinstance(
                spec.get("config"), dict):
            raise CheckpointError(f"{source}: malformed {MODEL_SPEC} section")
        return model_spec(spec["builder"], spec["config"], spec.get("meta"))
    config = state.get("config")
    if not isinstance(config, dict):
        return None
    for key, builder in _LEGACY_SECTIONS.items():
        section = config.get(key)
        if not isinstance(section, dict):
            continue
        if builder == "mask_rcnn":
            if "model" not in section or "categories" not in section:
                return None
            return model_spec(builder, section["model"], {"categories": section["categories"]})
        return model_spec(builder, section)
    return None


def find_checkpoint(path: str | os.PathLike) -> Path:
    """The checkpoint a path names. A file is itself; a run directory gives its ``best.pt`` (the best
    evaluation) when there is one, else its ``last.pt`` (runs without validation). The one rule for every
    command that loads a model."""
    path = Path(path)
    if path.is_dir():
        for name in (BEST, LAST):
            if (path / name).is_file():
                return path / name
        raise CheckpointError(f"{path}: run directory holds no {BEST} or {LAST}")
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint file or run directory not found")
    return path


def init_from_checkpoint(module: Any, path: str | os.PathLike, *, prefix: str = "backbone.body.",
                         trust_checkpoint: bool = False) -> Any:
    """Load the ``prefix*`` tensors of another model's checkpoint into ``module`` (an ``nn.Module``; e.g. a
    task's backbone from a densevision detector, which keeps it under ``backbone.body.``); the tensors are cast
    to the module's dtypes (shipped fp16 weights load into fp32). Every tensor of ``module`` must be there with
    its shape, else a :class:`CheckpointError` lists what does not fit. Returns ``module``."""
    state = unwrap_state_dict(read_checkpoint(path, trust_checkpoint=trust_checkpoint))
    found = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    if not found:
        raise CheckpointError(f"{path}: no tensors under {prefix!r} to initialise from "
                              f"(keys start with {sorted({k.split('.')[0] for k in state})[:8]})")
    own = module.state_dict()
    found = {k: v.to(own[k].dtype) if k in own and v.is_floating_point() else v for k, v in found.items()}
    load_state_dict_checked(module, found, f"{path} ({prefix}*)")
    return module
