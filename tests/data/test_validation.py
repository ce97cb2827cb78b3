"""Every file is validated before pycocotools sees it: the same rules for ground truth (``data check``, ``eval``)
and results (``eval``), each refusal one DataError line naming the file and the id; exit code 2 from the CLI."""

from __future__ import annotations

import copy
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from densevision.cli import main
from densevision.data.coco import load_coco
from densevision.data.jsonio import read_json
from densevision.errors import DataError
from densevision.evaluation import evaluate

H, W = 40, 60  # the size of tiny_coco's images


def _small_rle() -> dict:
    rle = mask_utils.encode(np.asfortranarray(np.ones((10, 10), np.uint8)))
    return {"size": [H, W], "counts": rle["counts"].decode()}  # 100 pixels of runs for a 40×60 image


BAD_SEGMENTATIONS = [
    ("two points", [[1, 1, 5, 5]], "polygon has 4 coordinates"),
    ("odd length", [[1, 1, 5, 5, 9, 9, 3]], "polygon has 7 coordinates"),
    ("string", "abc", "'segmentation' must be an RLE object or polygons, not str"),
    ("garbage counts", {"size": [H, W], "counts": "!!garbage~~"}, "not a valid compressed RLE string"),
    ("empty counts", {"size": [H, W], "counts": ""}, "'counts' do not add up to height × width (0 != 2400)"),
    ("short RLE", _small_rle(), "'counts' do not add up to height × width (100 != 2400)"),
    ("long list RLE", {"size": [H, W], "counts": [2400, 5]}, "do not add up to height × width (2405 != 2400)"),
    ("huge coordinate", [[1e300, 1, 5, 5, 9, 9]], "coordinate 1e+300 lies far outside the 60x40 image"),
    ("nan coordinate", [[math.nan, 1, 5, 5, 9, 9]], "non-finite coordinate"),
    ("negative RLE size", {"size": [-H, W], "counts": ""}, "segmentation size [-40, 60] does not match"),
]
BAD_BOXES = [
    ("nan bbox", [math.nan, 1, 2, 2], "'bbox' must be a list [x, y, w, h] of 4 finite numbers"),
    ("inf bbox", [1, 1, math.inf, 2], "'bbox' must be a list [x, y, w, h] of 4 finite numbers"),
    ("far bbox", [1e300, 1, 2, 2], "lies far outside the 60x40 image"),
]


def _write(path, obj):
    path.write_text(json.dumps(obj, allow_nan=True))
    return path


def _one_line_error(capsys, command: str) -> str:
    captured = capsys.readouterr()
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err
    prefix = f"densevision {command}: error: "
    assert captured.err.startswith(prefix)
    return captured.err[len(prefix):].rstrip("\n")


def _valid_results(data: dict) -> list[dict]:
    return [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9, "bbox": a["bbox"],
             "segmentation": a["segmentation"]} for a in data["annotations"] if not a["iscrowd"]]


@pytest.mark.parametrize(("seg", "message"), [c[1:] for c in BAD_SEGMENTATIONS], ids=[c[0] for c in BAD_SEGMENTATIONS])
def test_bad_segmentation_in_ground_truth(tiny_coco, tmp_path, capsys, seg, message):
    ann, root, data = tiny_coco
    data["annotations"][0]["segmentation"] = seg
    _write(ann, data)
    with pytest.raises(DataError) as info:
        load_coco(ann)
    assert str(info.value).startswith(f"{ann}: annotation id 1: ") and message in str(info.value)
    assert main(["data", "check", str(ann)]) == 2
    assert f"{ann}: annotation id 1: " in capsys.readouterr().out
    res = _write(tmp_path / "res.json", _valid_results(tiny_coco[2]))
    assert main(["eval", "--gt", str(ann), "--results", str(res)]) == 2
    line = _one_line_error(capsys, "eval")
    assert line.startswith(f"{ann}: annotation id 1: ") and message in line


@pytest.mark.parametrize(("seg", "message"), [c[1:] for c in BAD_SEGMENTATIONS], ids=[c[0] for c in BAD_SEGMENTATIONS])
def test_bad_segmentation_in_results(tiny_coco, tmp_path, capsys, seg, message):
    ann, _, data = tiny_coco
    results = _valid_results(data)
    results[1]["segmentation"] = seg
    res = _write(tmp_path / "res.json", results)
    with pytest.raises(DataError, match=f"^{res}: result 1: "):
        evaluate(ann, res)
    assert main(["eval", "--gt", str(ann), "--results", str(res), "--iou-types", "segm"]) == 2
    line = _one_line_error(capsys, "eval")
    assert line.startswith(f"{res}: result 1: ") and message in line


@pytest.mark.parametrize(("bbox", "message"), [c[1:] for c in BAD_BOXES], ids=[c[0] for c in BAD_BOXES])
def test_bad_boxes_in_ground_truth_and_results(tiny_coco, tmp_path, capsys, bbox, message):
    ann, _, data = tiny_coco
    good = _write(tmp_path / "good.json", copy.deepcopy(data))
    results = _valid_results(data)
    results[0]["bbox"] = bbox
    res = _write(tmp_path / "res.json", results)
    assert main(["eval", "--gt", str(good), "--results", str(res), "--iou-types", "bbox"]) == 2
    line = _one_line_error(capsys, "eval")
    assert line.startswith(f"{res}: result 0: ") and message in line
    data["annotations"][1]["bbox"] = bbox
    _write(ann, data)
    with pytest.raises(DataError, match=f"^{ann}: annotation id 2: ") as info:
        load_coco(ann)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d["annotations"][0].update(area=math.nan), "annotation id 1: 'area' must be a finite number >= 0"),
        (lambda d: d["annotations"][0].update(area=-3), "annotation id 1: 'area' must be a finite number >= 0"),
        (lambda d: d["annotations"][0].update(bbox=[1, 1, -2, 2]), "annotation id 1: bbox [1, 1, -2, 2] has width"),
        (lambda d: d["images"][0].update(height="40"), "image id 10: 'height' and 'width' must be positive integers"),
        (lambda d: d["images"][0].update(width=0), "image id 10: 'height' and 'width' must be positive integers"),
        (lambda d: d["images"][0].update(height=60000, width=60000),
         "image id 10: declared size 60000x60000 exceeds the limit of 16384 pixels per side"),
    ],
)
def test_absurd_values_in_ground_truth_name_the_ground_truth(tiny_coco, tmp_path, capsys, change, message):
    ann, _, data = tiny_coco
    res = _write(tmp_path / "res.json", _valid_results(data))
    change(data)
    _write(ann, data)
    assert main(["eval", "--gt", str(ann), "--results", str(res)]) == 2
    line = _one_line_error(capsys, "eval")
    assert line.startswith(f"{ann}: {message}")


def test_deeply_nested_json_is_one_line(tmp_path, capsys):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000)
    with pytest.raises(DataError, match=rf"^{deep}: not valid JSON \(nested too deeply\)$"):
        read_json(deep)
    assert main(["data", "check", str(deep)]) == 2
    assert _one_line_error(capsys, "data check") == f"{deep}: not valid JSON (nested too deeply)"
    good = _write(tmp_path / "gt.json", {"images": [], "annotations": [], "categories": []})
    assert main(["eval", "--gt", str(good), "--results", str(deep)]) == 2
    assert _one_line_error(capsys, "eval") == f"{deep}: not valid JSON (nested too deeply)"


def test_valid_files_still_evaluate(tiny_coco, tmp_path):
    ann, _, data = tiny_coco
    res = _write(tmp_path / "res.json", _valid_results(data))
    metrics = evaluate(ann, res)
    assert metrics["segm"]["AP"] == pytest.approx(100.0)
