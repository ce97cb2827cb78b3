"""Atomic file output: write to a temporary file in the same folder, fsync, then rename."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing and move it into place only on success.

    A crash or exception leaves any earlier file at ``path`` untouched and no partial file behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else (encoding or "utf-8")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically (temporary file, fsync, rename)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)
