"""``densevision models``: table, json, and a one-line error for a pattern that matches nothing."""

from __future__ import annotations

import json

from densevision.cli import main


def test_models_table_and_json(capsys) -> None:
    assert main(["models", "vit_tiny*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["model", "params", "(M)", "GMACs", "input"]
    assert lines[1].split()[:2] == ["vit_tiny_patch16_224", "5.72"] and lines[1].split()[-1] == "224x224"
    assert main(["models", "swin_tiny", "--json"]) == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert row["name"] == "swin_tiny_patch4_window7_224" and row["params"] == 28_288_354
    assert 4.4 < row["gmacs"] < 4.6 and row["input_size"] == [3, 224, 224]


def test_models_unknown_pattern(capsys) -> None:
    assert main(["models", "resnet*"]) == 2
    err = capsys.readouterr().err
    assert "no model matches 'resnet*'" in err and len(err.strip().splitlines()) == 1
