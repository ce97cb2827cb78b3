"""Every case of ``benchmarks/bad_input_campaign.py`` run in process: refused with exit status 2 and one line
naming the problem, no traceback, every input byte-identical, nothing left behind."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections import defaultdict
from pathlib import Path

import pytest

from densevision.cli import main

_SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bad_input_campaign.py"
_spec = importlib.util.spec_from_file_location("bad_input_campaign", _SCRIPT)
campaign = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = campaign  # its dataclasses look their module up
_spec.loader.exec_module(campaign)

NAMES = [case.name for case in campaign.cases(defaultdict(str))]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("campaign")
    work, pristine = root / "work", root / "pristine"
    files = campaign.make_inputs(work)
    shutil.copytree(work, pristine, symlinks=True)
    return work, pristine, files


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
def test_bad_input_is_refused_in_one_line(inputs, index, capsys, monkeypatch):
    work, pristine, files = inputs
    shutil.rmtree(work)
    shutil.copytree(pristine, work, symlinks=True)
    monkeypatch.chdir(work)
    case = campaign.cases(files)[index]
    before = campaign.digest(work)
    code = main(case.argv)
    captured = capsys.readouterr()
    after = campaign.digest(work)
    changed = [name for name, sha in before.items() if after.get(name) != sha]
    result, detail = campaign.verdict(case, code, captured.err, captured.out, changed)
    assert result == "OK", detail
