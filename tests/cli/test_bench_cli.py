"""``densevision bench``: one line per model, json output, and one-line errors."""

from __future__ import annotations

import json

from densevision.cli import main


def test_bench_compare_timm_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench" / "out.json"
    argv = ["bench", "vit_tiny_patch16_224", "--size", "32", "--batch", "2", "--runs", "2", "--warmup", "1",
            "--threads", "1", "--compare-timm", "--json", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("vit_tiny_patch16_224: ") and "ratio" in printed and "1 threads" in printed
    (result,) = json.loads(out.read_text())
    assert result["threads"] == 1 and result["input_size"] == [3, 32, 32] and result["timm"]["ratio"] > 0


def test_bench_errors_are_one_line(capsys) -> None:
    assert main(["bench", "cyclemlp_b1", "--compare-timm", "--size", "32", "--batch", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "timm has no model" in err and len(err.splitlines()) == 1
    assert main(["bench", "vit_tni_patch16_224"]) == 2
    assert "unknown model" in capsys.readouterr().err


def test_bench_refine_reports_instances_per_second(tmp_path, capsys) -> None:
    out = tmp_path / "refine.json"
    assert main(["bench", "--refine", "--refine-images", "2", "--runs", "2", "--threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("bpr refine: ") and "inst/s" in printed and "extraction + merge" in printed
    (entry,) = json.loads(out.read_text())
    result = entry["bpr_refine"]
    assert result["instances"] > 0 and result["instances_per_s"] == result["instances"] / result["wall_s"]
    assert 0.0 < result["extract_plus_merge_fraction"] < 1.0
    assert main(["bench"]) == 2
    assert "--refine" in capsys.readouterr().err
