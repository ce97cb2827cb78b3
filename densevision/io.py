"""File output: atomic writes (temporary file in the same folder, fsync, rename) and the guard that keeps a
command from writing over its own inputs."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Collection, Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from densevision.errors import DenseVisionError

PathLike = str | os.PathLike


def _cannot_write(path: Path, exc: OSError) -> DenseVisionError:
    return DenseVisionError(f"{path}: cannot write ({exc.strerror or exc})")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temporaries(path: PathLike) -> list[Path]:
    """Delete ``.NAME.PID.*.tmp`` siblings of ``path`` left by atomic writes of processes that no longer run
    (killed mid-write); returns what was removed. Temporaries of live processes are kept."""
    path = Path(path)
    removed = []
    with contextlib.suppress(OSError):
        for tmp in path.parent.glob(f".{path.name}.*.tmp"):
            pid = tmp.name[len(path.name) + 2:].split(".", 1)[0]
            if pid.isdigit() and (int(pid) == os.getpid() or _pid_alive(int(pid))):
                continue
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_open(path: PathLike, mode: str = "w", encoding: str | None = None) -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing and move it into place only on success.

    A crash or exception leaves any earlier file at ``path`` untouched and no partial file behind; temporaries
    of an earlier, killed write to the same path are removed first. Failures to create, write or move the file
    raise ``DenseVisionError`` naming ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise DenseVisionError(f"{path}: is a folder, expected a file to write")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_temporaries(path)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    except (FileExistsError, NotADirectoryError):
        raise DenseVisionError(f"{path}: cannot write (a file stands where a folder of this path should be)") from None
    except OSError as exc:
        raise _cannot_write(path, exc) from None
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp creates 0600; give the file the usual permissions
    try:
        binary = "b" in mode
        with os.fdopen(fd, mode, encoding=None if binary else (encoding or "utf-8")) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and (exc.filename is None or exc.filename in (tmp, str(path))):
            raise _cannot_write(path, exc) from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_json(path: PathLike, obj: Any, indent: int | None = 2) -> None:
    """Write ``obj`` as JSON to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        json.dump(obj, f, indent=indent)


def save_torch(path: PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically (temporary file, fsync, rename)."""
    import torch

    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _same(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def check_outputs(
    outputs: Mapping[str, PathLike | None],
    inputs: Mapping[str, PathLike | None],
    *,
    folders: Collection[str] = (),
) -> None:
    """Refuse outputs that would overwrite an input or cannot be written as what they are.

    ``outputs`` and ``inputs`` map a name (the flag, e.g. ``"--out"``) to a path (``None``: not given). An output
    is refused when it is (resolves to, or is a hard link of) an input; an output file (a name not in
    ``folders``) when it is an existing folder; an output folder when it is an existing file. Raises
    ``DenseVisionError`` "--out X is the input --results".
    """
    given_inputs = {name: Path(p) for name, p in inputs.items() if p is not None}
    for name, out in outputs.items():
        if out is None:
            continue
        out = Path(out)
        for in_name, src in given_inputs.items():
            if _same(out, src):
                raise DenseVisionError(f"{name} {out} is the input {in_name}; choose another output path")
        if name in folders:
            if out.exists() and not out.is_dir():
                raise DenseVisionError(f"{name} {out}: is a file, expected a folder")
        elif out.is_dir():
            raise DenseVisionError(f"{name} {out}: is a folder, expected a file to write")
        for parent in out.parents:
            if parent.exists():
                if not parent.is_dir():
                    raise DenseVisionError(f"{name} {out}: {parent} is a file, not a folder")
                break

