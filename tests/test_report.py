"""The demo report's tables."""

from __future__ import annotations

from densevision.report import gain_table


def test_gain_table_shows_differences_to_the_base_row_and_undefined_values():
    rows = {"coarse": {"segm": {"AP": 30.0, "APs": None}, "boundary": {"AP": 20.0, "APs": 10.0}},
            "refined": {"segm": {"AP": 31.5, "APs": None}, "boundary": {"AP": 19.75, "APs": 10.0}}}
    lines = gain_table(rows, ("segm", "boundary"), ("AP", "APs")).splitlines()
    assert lines[0] == "| | segm AP | segm APs | Boundary AP | Boundary APs |"
    assert lines[1] == "|---|---:|---:|---:|---:|"
    assert lines[2] == "| coarse | 30.00 | - | 20.00 | 10.00 |"
    assert lines[3] == "| refined | 31.50 (+1.50) | - | 19.75 (-0.25) | 10.00 (+0.00) |"
