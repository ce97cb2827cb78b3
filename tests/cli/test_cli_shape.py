"""The command tree ``densevision <task> <verb>``, its aliases, one name per flag, and a ``--help`` that does not
import torch."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

import pytest

from densevision.cli import COMMANDS, build_parser, main

ALL = ["detect train", "detect predict", "detect eval", "bpr patches", "bpr train", "bpr refine", "data synth",
       "data check", "eval", "models", "bench", "export-onnx", "demo", "train", "predict"]


def _leaves(parser: argparse.ArgumentParser, path: str = ""):
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield path.strip(), parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaves(child, f"{path} {name}")


def _options(parser: argparse.ArgumentParser) -> dict[str, argparse.Action]:
    return {s: a for a in parser._actions for s in a.option_strings}


def test_tree_has_tasks_verbs_and_aliases():
    leaves = dict(_leaves(build_parser()))
    assert {"detect train", "detect predict", "detect eval", "bpr patches", "bpr train", "bpr refine",
            "data synth", "data check", "eval", "models", "bench", "export-onnx", "demo", "train",
            "predict"} <= set(leaves)
    for alias, full in (("train", "detect train"), ("predict", "detect predict"), ("eval", "detect eval")):
        assert leaves[alias].get_default("func") is leaves[full].get_default("func")
        assert set(_options(leaves[alias])) == set(_options(leaves[full]))
    assert [c.name for c in COMMANDS][:2] == ["detect", "bpr"]


@pytest.mark.parametrize("path", ALL)
def test_one_name_per_flag(path):
    options = _options(dict(_leaves(build_parser()))[path])
    if "--batch" in options:
        assert options["--batch"] is options["--batch-size"]
    if "--json" in options and path == "bench":
        assert options["--json"] is options["--out"]
    if "--device" in options:
        assert options["--device"].default == "auto"
        assert options["--device"].type("cuda:1") == "cuda:1"
    if "--checkpoint" in options:
        assert "--trust-checkpoint" in options
    if "--amp" in options:
        assert "auto" in options["--amp"].choices
    if "--num-workers" in options:
        assert options["--num-workers"] is options["--workers"]


def test_help_of_every_command(capsys):
    for path, _ in _leaves(build_parser()):
        assert main([*path.split(), "--help"]) == 0
        assert capsys.readouterr().out.startswith(f"usage: densevision {path}")


FAST_HELP = """
import sys, time
from densevision.cli import main
start = time.perf_counter()
for argv in {argvs!r}:
    try:
        main(argv)
    except SystemExit:
        pass
heavy = sorted(m for m in ("torch", "torchvision", "timm", "numpy", "cv2", "pycocotools", "matplotlib")
               if m in sys.modules)
print({{"heavy": heavy, "seconds": time.perf_counter() - start}})
"""


def test_help_does_not_import_torch():
    argvs = [["--help"], ["--version"], ["detect", "--help"], ["data", "--help"], ["bpr", "--help"]]
    argvs += [[*path.split(), "--help"] for path, _ in _leaves(build_parser())]
    code = FAST_HELP.format(argvs=argvs)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1].replace("'", '"'))
    assert report["heavy"] == []


def test_constants_copied_to_keep_help_light_match_their_sources():
    from densevision.cli import data, eval, export
    from densevision.data.synthetic import generate_split
    from densevision.evaluation.coco import ALL_IOU_TYPES
    from densevision.export import DEFAULT_OPSET

    assert eval.ALL_IOU_TYPES == ALL_IOU_TYPES and export.DEFAULT_OPSET == DEFAULT_OPSET
    with pytest.raises(ValueError, match=f"at least {data.MIN_SYNTH_SIZE}"):
        generate_split("unused", "train", 1, size=data.MIN_SYNTH_SIZE - 1)
