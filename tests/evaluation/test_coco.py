"""COCO evaluation: equality with pycocotools' COCOeval, perfect results, the evaluator protocol, errors."""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math

import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densevision.errors import DataError, DenseVisionError
from densevision.evaluation import METRIC_NAMES, CocoEvaluator, evaluate, format_table
from densevision.evaluation import boundary as boundary_module
from densevision.evaluation.coco import PER_CLASS_NAMES, format_per_class, results_iou_types


def pycocotools_metrics(gt: dict, results: list[dict], iou_type: str) -> dict:
    """COCOeval run directly, stats in percent (-1 -> None)."""
    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iouType=iou_type)
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    stats = coco_eval.stats.tolist()
    return {k: 100.0 * v if v >= 0 else None for k, v in zip(METRIC_NAMES, stats, strict=True)}


def without_bbox(results: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "bbox"} for r in results]


def test_ground_truth_as_results_scores_100(coco_set, tiny_coco, gt_as_results):
    for gt in (tiny_coco[2], coco_set[0]):  # the last one has small and medium objects
        metrics = evaluate(gt, gt_as_results(gt))
        assert list(metrics) == ["bbox", "segm", "boundary"]
        for values in metrics.values():
            assert list(values) == list(METRIC_NAMES)
            for k in ("AP", "AP50", "AP75", "AR100"):
                assert values[k] == pytest.approx(100.0, abs=1e-9)
            for k in ("APs", "APm", "APl"):  # None: no ground truth of that size
                assert values[k] is None or values[k] == pytest.approx(100.0, abs=1e-9)
    assert None not in (metrics["segm"]["APs"], metrics["segm"]["APm"])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_bbox_and_segm_equal_pycocotools(make_coco_set, seed):
    gt, results = make_coco_set(seed)
    metrics = evaluate(gt, results, ["bbox", "segm"])
    assert metrics["bbox"] == pycocotools_metrics(gt, results, "bbox")
    # segm drops the result boxes so that small/medium/large use the mask area
    assert metrics["segm"] == pycocotools_metrics(gt, without_bbox(results), "segm")
    assert 0 < metrics["segm"]["AP"] < 100 and 0 < metrics["bbox"]["AP"] < 100


def test_segm_area_ranges_ignore_result_boxes(coco_set):
    gt, results = coco_set
    huge = [{**r, "bbox": [0.0, 0.0, 500.0, 500.0]} for r in results]
    types = ["segm", "boundary"]
    assert evaluate(gt, huge, types) == evaluate(gt, without_bbox(results), types)


def test_ground_truth_sources_agree_and_dict_is_not_modified(coco_set, tmp_path):
    gt, results = coco_set
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(gt))
    before = copy.deepcopy(gt)
    from_dict = evaluate(gt, results)
    assert gt == before
    coco = COCO()
    coco.dataset = copy.deepcopy(gt)
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    res_path = tmp_path / "res.json"
    res_path.write_text(json.dumps(results))
    assert evaluate(path, res_path) == from_dict
    assert evaluate(str(path), results) == from_dict
    assert evaluate(coco, results) == from_dict


def uncompressed(rle: dict) -> dict:
    flat = mask_utils.decode(rle).flatten(order="F")
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]]))
    counts = ([0] if flat[0] else []) + runs.tolist()
    return {"size": rle["size"], "counts": counts}


def test_result_segmentation_formats_agree(coco_set):
    gt, results = coco_set
    reference = evaluate(gt, results, ["segm", "boundary"])
    as_bytes = [{**r, "segmentation": {**r["segmentation"], "counts": r["segmentation"]["counts"].encode()}}
                for r in results]
    as_lists = [{**r, "segmentation": uncompressed(r["segmentation"])} for r in results]
    assert evaluate(gt, as_bytes, ["segm", "boundary"]) == reference
    assert evaluate(gt, as_lists, ["segm", "boundary"]) == reference
    # polygons: the ground truth's own polygons as results are perfect
    polys = [a for a in gt["annotations"] if isinstance(a["segmentation"], list)]
    assert polys
    poly_gt = {**gt, "annotations": polys}
    poly_results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.7,
                     "segmentation": a["segmentation"]} for a in polys]
    assert evaluate(poly_gt, poly_results, ["segm", "boundary"])["boundary"]["AP"] == 100.0


def test_numpy_scalars_are_accepted(coco_set):
    gt, results = coco_set
    np_results = [{**r, "image_id": np.int64(r["image_id"]), "score": np.float32(r["score"])}
                  for r in results]
    py_results = [{**r, "score": float(np.float32(r["score"]))} for r in results]
    assert evaluate(gt, np_results, ["bbox"]) == evaluate(gt, py_results, ["bbox"])


def test_empty_results_give_zeros(coco_set):
    metrics = evaluate(coco_set[0], [])
    for values in metrics.values():
        assert values["AP"] == values["AP50"] == values["AR100"] == 0.0
        assert all(v in (0.0, None) for v in values.values())


def test_dilation_ratio_changes_boundary_only(coco_set):
    gt, results = coco_set
    thin = evaluate(gt, results, dilation_ratio=0.005)
    wide = evaluate(gt, results, dilation_ratio=0.1)
    assert thin["segm"] == wide["segm"] and thin["bbox"] == wide["bbox"]
    assert thin["boundary"]["AP"] < wide["boundary"]["AP"] <= wide["segm"]["AP"]


def test_evaluator_protocol(coco_set, monkeypatch):
    gt, results = coco_set
    calls = []
    band = boundary_module.boundary_rle
    monkeypatch.setattr(boundary_module, "boundary_rle", lambda rle, r: calls.append(1) or band(rle, r))
    evaluator = CocoEvaluator(gt)
    evaluator.process(results[:5])
    evaluator.process(results[5:])
    first = evaluator.evaluate()
    assert first == evaluate(gt, results)
    n_first = len(calls)
    calls.clear()
    evaluator.reset()
    evaluator.process(iter(results))
    assert evaluator.evaluate() == first
    assert 0 < len(calls) < n_first  # ground-truth bands come from the cache the second time
    evaluator.reset()
    assert evaluator.evaluate()["segm"]["AP"] == 0.0
    assert evaluator.evaluate(results) == first  # a list gathered by the engine


def test_format_table(coco_set):
    metrics = evaluate(*coco_set)
    metrics["segm"]["APl"] = None
    lines = format_table(metrics).splitlines()
    assert lines[0].split() == ["iou", "type", "AP", "AP50", "AP75", "APs", "APm", "APl"]
    assert [line.split()[0] for line in lines[1:]] == ["bbox", "segm", "boundary"]
    assert lines[2].split()[-1] == "-"
    assert float(lines[1].split()[1]) == pytest.approx(metrics["bbox"]["AP"], abs=0.005)


BAD_RESULTS = [
    ("unknown image", lambda r: r[0].update(image_id=999), "result 0: image_id 999 is not an image"),
    ("unknown category", lambda r: r[1].update(category_id=77), "result 1: category_id 77 is not a category"),
    ("missing score", lambda r: r[2].pop("score"), "result 2: missing key 'score'"),
    ("missing bbox", lambda r: r[0].pop("bbox"), "result 0: missing key 'bbox'"),
    ("missing segmentation", lambda r: r[3].pop("segmentation"), "result 3: missing key 'segmentation'"),
    ("string image id", lambda r: r[0].update(image_id="1"), "'image_id' must be an integer, got str"),
    ("bool category", lambda r: r[0].update(category_id=True), "'category_id' must be an integer, got bool"),
    ("nan score", lambda r: r[4].update(score=math.nan), "result 4: 'score' must be a finite number"),
    ("text score", lambda r: r[0].update(score="high"), "'score' must be a finite number, got 'high'"),
    ("short bbox", lambda r: r[0].update(bbox=[1, 2, 3]), "'bbox' must be a list [x, y, w, h]"),
    ("negative bbox", lambda r: r[0].update(bbox=[1, 2, -3, 4]), "'bbox' has a negative width"),
    ("wrong size", lambda r: r[0]["segmentation"].update(size=[8, 8]), "size [8, 8] does not match"),
    ("wrong counts", lambda r: r[0]["segmentation"].update(counts=5), "'counts' must be a string or a list"),
    ("short counts", lambda r: r[0]["segmentation"].update(counts=[3, 4]), "'counts' do not add up"),
    ("segmentation int", lambda r: r[0].update(segmentation=3), "'segmentation' must be an RLE object"),
    ("bad polygon", lambda r: r[0].update(segmentation=[[1, 2, 3]]), "a polygon must list 3 or more"),
    ("not an object", lambda r: r.__setitem__(2, [1, 2]), "result 2: expected an object, got list"),
]


@pytest.mark.parametrize(("mutate", "message"), [c[1:] for c in BAD_RESULTS], ids=[c[0] for c in BAD_RESULTS])
def test_bad_results_raise_one_line_data_error(coco_set, tmp_path, mutate, message):
    gt, results = coco_set
    results = copy.deepcopy(results)
    mutate(results)
    path = tmp_path / "res.json"
    path.write_text(json.dumps(results, allow_nan=True))
    with pytest.raises(DataError) as info:
        evaluate(gt, path)
    text = str(info.value)
    assert message in text and text.startswith(f"{path}: ") and "\n" not in text


def test_checks_follow_iou_types(coco_set):
    gt, results = coco_set
    no_segm = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    assert evaluate(gt, no_segm, ["bbox"])["bbox"] == evaluate(gt, results, ["bbox"])["bbox"]
    with pytest.raises(DataError, match=r"^results: result 0: missing key 'bbox'$"):
        evaluate(gt, [*without_bbox(results[:1]), *results[1:]], ["boundary", "bbox"])


def test_iou_types_default_to_what_the_results_contain(coco_set, tmp_path):
    gt, results = coco_set
    boxes = [{k: v for k, v in r.items() if k != "segmentation"} for r in results]
    assert list(evaluate(gt, boxes)) == ["bbox"]
    assert list(evaluate(gt, results)) == ["bbox", "segm", "boundary"]
    assert list(evaluate(gt, without_bbox(results))) == ["segm", "boundary"]
    assert list(evaluate(gt, [])) == ["bbox"]
    assert results_iou_types([{"bbox": [0, 0, 1, 1], "keypoints": [1, 2, 2]}]) == ("keypoints",)
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps(boxes))
    with pytest.raises(DenseVisionError) as info:
        evaluate(gt, path, ["bbox", "segm"])
    assert str(info.value) == (f"{path}: segm AP needs 'segmentation' and no result has one (they give bbox: "
                               "evaluate them as bbox)")
    with pytest.raises(DenseVisionError, match="^results: keypoints AP needs 'keypoints' and no result has one"):
        evaluate(gt, results, ["keypoints"])


def test_per_class_ap_of_a_perfect_and_a_wrong_category(tiny_coco):
    _, _, data = tiny_coco
    gt = {**data, "categories": [*data["categories"], {"id": 9, "name": "nine"}]}  # no ground truth
    zero, seven = (a for a in gt["annotations"] if not a["iscrowd"])
    results = [{"image_id": zero["image_id"], "category_id": 0, "score": 0.9, "bbox": zero["bbox"]},
               {"image_id": 12, "category_id": 7, "score": 0.8, "bbox": seven["bbox"]},  # wrong image
               {"image_id": seven["image_id"], "category_id": 7, "score": 0.7, "bbox": [0.0, 0.0, 5.0, 5.0]}]
    per_class: dict = {}
    metrics = evaluate(gt, results, per_class=per_class)
    rows = {r["name"]: r for r in per_class["bbox"]}
    assert list(per_class) == ["bbox"] and [r["id"] for r in per_class["bbox"]] == [0, 7, 9]
    assert [rows["zero"][k] for k in PER_CLASS_NAMES] == pytest.approx([100.0] * 3)
    assert [rows["seven"][k] for k in PER_CLASS_NAMES] == [0.0] * 3
    assert [rows["nine"][k] for k in PER_CLASS_NAMES] == [None] * 3
    assert metrics["bbox"]["AP"] == pytest.approx(50.0)  # COCO AP is the mean over categories with ground truth
    assert [line.split() for line in format_per_class(per_class).splitlines()] == [
        ["bbox", "class", "AP", "AP50", "AP75"], ["zero", "100.00", "100.00", "100.00"],
        ["seven", "0.00", "0.00", "0.00"], ["nine", "-", "-", "-"]]


def test_per_class_ap_averages_to_the_summary_ap(coco_set):
    gt, results = coco_set
    per_class: dict = {}
    metrics = evaluate(gt, results, ["segm", "boundary"], per_class=per_class)
    for iou_type in ("segm", "boundary"):
        for name in PER_CLASS_NAMES:
            values = [r[name] for r in per_class[iou_type] if r[name] is not None]
            assert np.mean(values) == pytest.approx(metrics[iou_type][name], abs=1e-9)


@pytest.mark.parametrize(
    ("text", "message"),
    [("[{", "not valid JSON (Expecting"), ('{"image_id": 1}', "expected a list of result objects, got dict")],
)
def test_malformed_results_file(coco_set, tmp_path, text, message):
    path = tmp_path / "res.json"
    path.write_text(text)
    with pytest.raises(DataError, match=f"^{path}: ") as info:
        evaluate(coco_set[0], path)
    assert message in str(info.value)
    with pytest.raises(DataError, match="no such file"):
        evaluate(coco_set[0], tmp_path / "missing.json")


def test_bad_ground_truth_and_arguments(coco_set, tmp_path):
    gt, results = coco_set
    with pytest.raises(DataError, match="^ground truth: missing or non-list key 'annotations'"):
        evaluate({"images": []}, results)
    bad = copy.deepcopy(gt)
    bad["annotations"][1]["image_id"] = 404
    with pytest.raises(DataError, match="annotation id 2: refers to unknown image id 404"):
        evaluate(bad, results)
    bad = copy.deepcopy(gt)
    bad["annotations"][2]["id"] = bad["annotations"][0]["id"]
    with pytest.raises(DataError, match=f"annotation id {bad['annotations'][0]['id']}: id appears twice"):
        evaluate(bad, results)
    bad = copy.deepcopy(gt)
    del bad["annotations"][0]["area"]
    path = tmp_path / "gt.json"
    path.write_text(json.dumps(bad))
    with pytest.raises(DataError, match=f"^{path}: annotation id 1: missing 'area'$"):
        evaluate(path, results)
    with pytest.raises(DenseVisionError, match="unknown IoU type 'panoptic'"):
        evaluate(gt, results, ["segm", "panoptic"])
    with pytest.raises(DenseVisionError, match="no IoU type given"):
        evaluate(gt, results, [])
    assert list(evaluate(gt, results, "segm")) == ["segm"]
    with pytest.raises(DenseVisionError, match="dilation ratio"):
        evaluate(gt, results, dilation_ratio=-1.0)
