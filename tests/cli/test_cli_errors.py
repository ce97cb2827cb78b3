"""The error boundary: every expected failure is one line on stderr naming the file and the cause, exit 2, no
traceback; bugs are one line, exit 1, with the traceback only under --debug. Outputs never overwrite inputs."""

from __future__ import annotations

import argparse
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from densevision.cli import expected_error, main
from densevision.errors import UntrustedCheckpointError


@pytest.fixture
def files(tiny_coco, tmp_path):
    """Ground truth, a results file, an image folder, a text file, an empty file and an untrusted checkpoint."""
    import torch

    gt, images, data = tiny_coco
    results = tmp_path / "results.json"
    results.write_text(json.dumps([{"image_id": 10, "category_id": 0, "score": 0.9, "bbox": [10, 10, 10, 10],
                                    "segmentation": [[10, 10, 20, 10, 20, 20, 10, 20]]}]))
    text = tmp_path / "notes.txt"
    text.write_text("not a checkpoint\n")
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    untrusted = tmp_path / "untrusted.pt"
    torch.save({"args": argparse.Namespace(lr=0.1)}, untrusted)
    return {"gt": gt, "results": results, "images": images, "image": images / "im0.png", "text": text,
            "empty": empty, "untrusted": untrusted, "dir": tmp_path}


def _one_line(capsys, code: int = 2) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.strip()


def _run(argv, files) -> list[str]:
    return [a.format(**{k: str(v) for k, v in files.items()}) for a in argv]


CASES = [
    ("out is a folder", ["eval", "--gt", "{gt}", "--results", "{results}", "--out", "{dir}"],
     "--out {dir}: is a folder"),
    ("out under /proc", ["eval", "--gt", "{gt}", "--results", "{results}", "--out", "/proc/dv/m.json"],
     "/proc/dv/m.json: cannot write"),
    ("out under read-only /sys", ["eval", "--gt", "{gt}", "--results", "{results}", "--out", "/sys/m.json"],
     "/sys/m.json: cannot write"),
    ("file where a folder should be", ["eval", "--gt", "{gt}", "--results", "{results}", "--out",
                                       "{text}/sub/m.json"], "{text} is a file, not a folder"),
    ("predict --out .", ["predict", "--checkpoint", "{text}", "--images", "{images}", "--out", ".",
                         "--device", "cpu"], "--out .: is a folder"),
    ("text file as checkpoint", ["predict", "--checkpoint", "{text}", "--images", "{images}", "--out",
                                 "{dir}/p.json", "--device", "cpu"],
     "{text}: not a PyTorch checkpoint (neither a zip archive nor a pickle"),
    ("empty checkpoint", ["detect", "predict", "--checkpoint", "{empty}", "--images", "{images}", "--out",
                          "{dir}/p.json", "--device", "cpu"], "{empty}: not a PyTorch checkpoint (the file is empty)"),
    ("untrusted checkpoint", ["predict", "--checkpoint", "{untrusted}", "--images", "{images}", "--out",
                              "{dir}/p.json", "--device", "cpu"],
     "{untrusted}: this checkpoint holds non-tensor objects and needs full unpickling (Unsupported global: GLOBAL "
     "argparse.Namespace); if you trust its source, pass --trust-checkpoint"),
    ("export checkpoint is text", ["export-onnx", "vit_tiny_patch16_224", "{dir}/m.onnx", "--checkpoint", "{text}"],
     "{text}: not a PyTorch checkpoint"),
    ("malformed ground truth", ["eval", "--gt", "{text}", "--results", "{results}"], "{text}: "),
    ("train --device tpu", ["train", "--device", "tpu", "--out", "{dir}/run"], "argument --device: expected auto"),
    ("data synth --size 0", ["data", "synth", "{dir}/s", "--size", "0"], "argument --size: expected an integer ≥ 64"),
    ("data synth --train -3", ["data", "synth", "{dir}/s", "--train", "-3"],
     "argument --train: expected an integer ≥ 0"),
    ("predict --score-thr nan", ["predict", "--checkpoint", "{text}", "--images", "{images}", "--out", "{dir}/p.json",
                                 "--score-thr", "nan"], "argument --score-thr: expected a finite number"),
    ("bench --batch-size 0", ["bench", "vit_tiny_patch16_224", "--batch-size", "0"],
     "argument --batch-size/--batch: expected a positive integer"),
    ("demo --device tpu", ["demo", "--device", "tpu", "--out", "{dir}/demo"], "argument --device: expected auto"),
]


@pytest.mark.parametrize(("argv", "message"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_expected_failures_are_one_line_exit_2(files, capsys, argv, message):
    before = sorted(p.name for p in files["dir"].iterdir())
    assert main(_run(argv, files)) == 2
    line = _one_line(capsys)
    assert line.startswith("densevision ") and ": error: " in line
    assert message.format(**{k: str(v) for k, v in files.items()}) in line
    assert sorted(p.name for p in files["dir"].iterdir()) == before


def test_full_disk_is_one_line(files, capsys, monkeypatch):
    def full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "replace", full)
    out = files["dir"] / "m.json"
    assert main(["eval", "--gt", str(files["gt"]), "--results", str(files["results"]), "--out", str(out)]) == 2
    assert _one_line(capsys).endswith(f"{out}: cannot write (No space left on device)")


def test_demo_without_cuda_writes_nothing(files, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    out = files["dir"] / "demo"
    assert main(["demo", "--device", "cuda", "--out", str(out)]) == 2
    assert "no CUDA device is available" in _one_line(capsys)
    assert not out.exists()


def test_untrusted_message_names_the_flag_only_where_it_exists(files):
    exc = UntrustedCheckpointError(str(files["untrusted"]), "Unsupported global: GLOBAL argparse.Namespace")
    assert "with trust_checkpoint=True" in str(exc)
    assert expected_error(exc, argparse.Namespace(trust_checkpoint=False)).endswith("pass --trust-checkpoint")
    assert "--trust-checkpoint" not in expected_error(exc, argparse.Namespace())


def test_trusted_checkpoint_is_loaded(files, capsys):
    argv = ["predict", "--checkpoint", str(files["untrusted"]), "--images", str(files["images"]), "--out",
            str(files["dir"] / "p.json"), "--device", "cpu", "--trust-checkpoint"]
    assert main(argv) == 2
    assert "not a densevision Mask R-CNN checkpoint" in _one_line(capsys)


def test_a_bug_is_one_line_exit_1_and_a_traceback_with_debug(files, capsys, monkeypatch):
    import densevision.cli.eval as eval_cli

    def broken(args):
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(eval_cli, "run", broken)
    argv = ["eval", "--gt", str(files["gt"]), "--results", str(files["results"])]
    assert main(argv) == 1
    assert "internal error: ZeroDivisionError: division by zero" in _one_line(capsys)
    with pytest.raises(ZeroDivisionError):
        main(["--debug", *argv])
    with pytest.raises(ZeroDivisionError):
        main([*argv, "--debug"])
    monkeypatch.setenv("DENSEVISION_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        main(argv)


def test_module_entry_point_has_no_traceback(files):
    proc = subprocess.run([sys.executable, "-m", "densevision", "--debug", "eval", "--gt", str(files["text"]),
                           "--results", str(files["results"])], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert str(files["text"]) in proc.stderr


# Every command with an output, its output flag set to each of its inputs: exit 2, the input unchanged.
GUARD = [
    (["eval", "--gt", "{gt}", "--results", "{results}", "--out", "{gt}"], "gt"),
    (["eval", "--gt", "{gt}", "--results", "{results}", "--out", "{results}"], "results"),
    (["detect", "eval", "--ann", "{gt}", "--results", "{results}", "--out", "{results}"], "results"),
    (["predict", "--checkpoint", "{text}", "--images", "{images}", "--out", "{text}"], "text"),
    (["predict", "--checkpoint", "{text}", "--images", "{images}", "--ann", "{gt}", "--out", "{gt}"], "gt"),
    (["predict", "--checkpoint", "{text}", "--images", "{images}", "--out", "{images}"], "images"),
    (["predict", "--checkpoint", "{text}", "--images", "{image}", "--out", "{image}"], "image"),
    (["predict", "--checkpoint", "{text}", "--images", "{images}", "--out", "{image}"], "image"),
    (["detect", "predict", "--checkpoint", "{text}", "--images", "{images}", "--out", "{dir}/p.json", "--viz",
      "{images}"], "images"),
    (["export-onnx", "vit_tiny_patch16_224", "{text}", "--checkpoint", "{text}"], "text"),
    (["export-onnx", "vit_tiny_patch16_224", "--out", "{text}", "--checkpoint", "{text}"], "text"),
    (["data", "synth", "--out", "{text}", "--train", "1", "--val", "0", "--size", "64"], "text"),
    (["bench", "vit_tiny_patch16_224", "--out", "{images}"], "images"),
    (["demo", "--out", "{text}", "--device", "cpu"], "text"),
    (["bpr", "refine", "--ann", "{gt}", "--images", "{images}", "--results", "{results}", "--checkpoint", "{text}",
      "--out", "{results}"], "results"),
    (["bpr", "refine", "--ann", "{gt}", "--images", "{images}", "--results", "{results}", "--checkpoint", "{text}",
      "--out", "{gt}"], "gt"),
    (["bpr", "patches", "--results", "{results}", "--ann", "{gt}", "--images", "{images}", "--out", "{gt}"], "gt"),
    (["bpr", "patches", "--results", "{results}", "--ann", "{gt}", "--images", "{images}", "--out", "{images}"],
     "images"),
    (["detect", "train", "--train-json", "{gt}", "--train-images", "{images}", "--out", "{images}"], "images"),
    (["train", "--train-json", "{gt}", "--train-images", "{images}", "--out", "{gt}"], "gt"),
    (["bpr", "train", "--patches", "{images}", "--out", "{images}"], "images"),
    (["seg", "predict", "--checkpoint", "{text}", "--images", "{images}", "--out", "{images}"], "images"),
    (["seg", "eval", "--pred", "{images}", "--labels", "{images}", "--classes", "{text}", "--out", "{text}"], "text"),
    (["seg", "train", "--train-images", "{images}", "--train-labels", "{images}", "--classes", "{text}",
      "--out", "{images}"], "images"),
    (["pose", "predict", "--checkpoint", "{text}", "--images", "{images}", "--ann", "{gt}", "--gt-boxes",
      "--out", "{gt}"], "gt"),
    (["pose", "train", "--train-json", "{gt}", "--train-images", "{images}", "--out", "{images}"], "images"),
]


def _snapshot(path: Path) -> dict[str, bytes]:
    if path.is_dir():
        return {p.name: p.read_bytes() for p in sorted(path.iterdir())}
    return {path.name: path.read_bytes()}


@pytest.mark.parametrize(("argv", "victim"), GUARD, ids=[" ".join(g[0][:2]) + " " + g[1] for g in GUARD])
def test_outputs_never_overwrite_inputs(files, capsys, argv, victim):
    before = _snapshot(files[victim])
    assert main(_run(argv, files)) == 2
    line = _one_line(capsys)
    assert "is the input" in line or "is a folder" in line or "is a file, expected a folder" in line
    assert _snapshot(files[victim]) == before
