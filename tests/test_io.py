"""Atomic writes (no partial file, stale temporaries of killed writes removed, one-line errors naming the
path) and the guard that keeps outputs off inputs."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys

import pytest

from densevision.errors import DenseVisionError
from densevision.io import atomic_open, check_outputs, remove_stale_temporaries, write_json


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "a.json"
    write_json(path, {"v": 1})
    with pytest.raises(RuntimeError), atomic_open(path) as f:
        f.write("partial")
        raise RuntimeError("killed")
    assert json.loads(path.read_text()) == {"v": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"]


def test_stale_temporaries_of_dead_writers_are_removed_on_the_next_write(tmp_path):
    path = tmp_path / "a.json"
    dead = tmp_path / f".a.json.{_dead_pid()}.x1y2.tmp"
    legacy = tmp_path / ".a.json.k3j4h5.tmp"  # written before temporaries carried the writer's pid
    live = tmp_path / f".a.json.{os.getppid()}.q9w8.tmp"
    other = tmp_path / f".b.json.{_dead_pid()}.zz.tmp"
    for p in (dead, legacy, live, other):
        p.write_text("partial")
    write_json(path, [1])
    assert json.loads(path.read_text()) == [1]
    assert not dead.exists() and not legacy.exists()
    assert live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "b.json") == [other]


@pytest.mark.parametrize("case", ["folder", "file_as_parent", "proc", "sys"])
def test_unwritable_paths_raise_one_line_naming_the_path(tmp_path, case):
    (tmp_path / "dir").mkdir()
    (tmp_path / "file").write_text("x")
    path = {"folder": tmp_path / "dir", "file_as_parent": tmp_path / "file" / "sub" / "a.json",
            "proc": "/proc/densevision-test.json", "sys": "/sys/densevision-test.json"}[case]
    with pytest.raises(DenseVisionError) as info:
        write_json(path, [1])
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message


def test_full_disk_while_moving_into_place(tmp_path, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), src)

    monkeypatch.setattr(os, "replace", full)
    with pytest.raises(DenseVisionError, match=r"a\.json: cannot write \(No space left on device\)"):
        write_json(tmp_path / "a.json", [1])
    assert list(tmp_path.iterdir()) == []


def test_check_outputs(tmp_path):
    src = tmp_path / "in.json"
    src.write_text("[]")
    os.link(src, tmp_path / "hard.json")
    (tmp_path / "link.json").symlink_to(src)
    (tmp_path / "dir").mkdir()
    for out in (src, tmp_path / "hard.json", tmp_path / "link.json", tmp_path / "dir" / ".." / "in.json"):
        with pytest.raises(DenseVisionError, match=r"^--out .* is the input --results"):
            check_outputs({"--out": out}, {"--gt": None, "--results": src})
    with pytest.raises(DenseVisionError, match="is a folder, expected a file"):
        check_outputs({"--out": tmp_path / "dir"}, {})
    with pytest.raises(DenseVisionError, match="is a file, expected a folder"):
        check_outputs({"--viz": src}, {}, folders=("--viz",))
    with pytest.raises(DenseVisionError, match="in.json is a file, not a folder"):
        check_outputs({"--out": src / "x" / "y.json"}, {})
    check_outputs({"--out": tmp_path / "new" / "out.json", "--viz": tmp_path / "dir", "--none": None},
                  {"--results": src}, folders=("--viz",))
