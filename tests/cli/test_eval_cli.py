"""``densevision eval``: table, metrics json, and one-line errors with exit code 2 for bad results files."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from densevision.cli import main
from densevision.evaluation import evaluate


def perfect_results(data: dict) -> list[dict]:
    """The two non-crowd annotations of ``tiny_coco`` as results (the polygon given as polygon)."""
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9, "bbox": a["bbox"],
             "segmentation": a["segmentation"]} for a in data["annotations"] if not a["iscrowd"]]


@pytest.fixture
def files(tiny_coco, tmp_path):
    gt, _, data = tiny_coco
    results = perfect_results(data)
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    return gt, path, results


def test_eval_prints_table_and_writes_json(files, tmp_path, capsys):
    gt, res, _ = files
    out = tmp_path / "out" / "metrics.json"
    assert main(["eval", "--gt", str(gt), "--results", str(res), "--out", str(out)]) == 0
    metrics = json.loads(out.read_text())
    assert metrics == evaluate(gt, res)
    assert metrics["boundary"]["AP"] == pytest.approx(100.0)
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()}
    assert rows["bbox"][0] == rows["segm"][0] == rows["boundary"][0] == "100.00"

    assert main(["eval", "--gt", str(gt), "--results", str(res), "--iou-types", "boundary", "segm",
                 "--dilation-ratio", "0.005", "--out", str(out)]) == 0
    assert list(json.loads(out.read_text())) == ["boundary", "segm"]


def test_eval_defaults_to_the_types_the_results_contain(files, tmp_path, capsys):
    gt, res, results = files
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{k: v for k, v in r.items() if k != "segmentation"} for r in results]))
    assert main(["eval", "--gt", str(gt), "--results", str(boxes)]) == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["iou", "bbox"]
    assert main(["eval", "--gt", str(gt), "--results", str(boxes), "--iou-types", "bbox", "segm"]) == 2
    err = capsys.readouterr().err
    assert err == (f"densevision eval: error: {boxes}: segm AP needs 'segmentation' and no result has one (they "
                   "give bbox: evaluate them as bbox)\n")


def test_eval_per_class_table_and_json(files, tmp_path, capsys):
    gt, res, results = files
    wrong = [results[0], {**results[1], "image_id": 12}]  # category 'seven' found in the wrong image
    res.write_text(json.dumps(wrong))
    out = tmp_path / "metrics.json"
    assert main(["eval", "--gt", str(gt), "--results", str(res), "--iou-types", "segm", "--per-class",
                 "--out", str(out)]) == 0
    lines = [line.split() for line in capsys.readouterr().out.splitlines()]
    assert ["segm", "class", "AP", "AP50", "AP75"] in lines
    assert ["seven", "0.00", "0.00", "0.00"] in lines and ["zero", "100.00", "100.00", "100.00"] in lines
    metrics = json.loads(out.read_text())
    assert list(metrics) == ["segm", "per_class"]
    assert [(r["id"], r["name"], round(r["AP"], 6)) for r in metrics["per_class"]["segm"]] == \
        [(0, "zero", 100.0), (7, "seven", 0.0)]


BAD = [
    ("unknown image", lambda r: r[1].update(image_id=4242), "result 1: image_id 4242 is not an image"),
    ("unknown category", lambda r: r[0].update(category_id=3), "result 0: category_id 3 is not a category"),
    ("missing key", lambda r: r[1].pop("category_id"), "result 1: missing key 'category_id'"),
    ("wrong type", lambda r: r[0].update(score=[0.5]), "result 0: 'score' must be a finite number"),
    ("bad mask size", lambda r: r[1]["segmentation"].update(size=[60, 40]), "result 1: segmentation size"),
]


@pytest.mark.parametrize(("mutate", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_results_exit_2_with_one_line(files, capsys, mutate, message):
    gt, res, results = files
    mutate(results)
    res.write_text(json.dumps(results))
    assert main(["eval", "--gt", str(gt), "--results", str(res)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"densevision eval: error: {res}: {message}") and err.count("\n") == 1


@pytest.mark.parametrize(("text", "message"), [("not json", "not valid JSON"), ("{}", "expected a list")])
def test_malformed_results_file_exit_2(files, capsys, text, message):
    gt, res, _ = files
    res.write_text(text)
    assert main(["eval", "--gt", str(gt), "--results", str(res)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"densevision eval: error: {res}: {message}") and err.count("\n") == 1


@pytest.mark.slow  # ~20 s: a fresh interpreter imports torch and every CLI module
def test_module_entry_point_reports_without_traceback(files):
    gt, res, results = files
    results[0]["image_id"] = 99
    res.write_text(json.dumps(results))
    command = [sys.executable, "-m", "densevision", "eval", "--gt", str(gt), "--results", str(res)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    expected = f"densevision eval: error: {res}: result 0: image_id 99 is not an image of the ground truth\n"
    assert proc.stderr == expected
