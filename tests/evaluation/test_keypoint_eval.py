"""Keypoint (OKS) AP: equal to pycocotools on hand-made cases, per-category sigmas, and clear errors."""

from __future__ import annotations

import contextlib
import copy
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from densevision.cli import main
from densevision.data.keypoints import COCO_PERSON_KEYPOINTS
from densevision.errors import DenseVisionError
from densevision.evaluation.coco import KEYPOINT_METRIC_NAMES, evaluate


def _case(categories: list[dict], seed: int = 0) -> tuple[dict, list[dict]]:
    """Two 200×200 images, three instances per category and image; results are the ground truth moved by
    noise of several sizes, with one missed instance and one false positive."""
    rng = np.random.default_rng(seed)
    images = [{"id": i, "file_name": f"{i}.png", "height": 200, "width": 200} for i in (1, 2)]
    anns, results = [], []
    for img in images:
        for cat in categories:
            k = len(cat["keypoints"])
            for j in range(3):
                x, y, w, h = *rng.uniform(10, 90, 2), *rng.uniform(30, 100, 2)
                pts = np.c_[rng.uniform(x, x + w, k), rng.uniform(y, y + h, k), rng.choice([0, 1, 2, 2, 2], k)]
                pts[pts[:, 2] == 0, :2] = 0
                anns.append({"id": len(anns) + 1, "image_id": img["id"], "category_id": cat["id"], "iscrowd": 0,
                             "bbox": [x, y, w, h], "area": w * h * 0.6, "keypoints": pts.ravel().round(2).tolist(),
                             "num_keypoints": int((pts[:, 2] > 0).sum())})
                if j == 2 and img["id"] == 2:
                    continue
                guess = pts[:, :2] + rng.normal(0, 1 + 3 * j, (k, 2))
                results.append({"image_id": img["id"], "category_id": cat["id"], "score": float(rng.uniform()),
                                "keypoints": np.c_[guess, np.ones(k)].ravel().round(2).tolist()})
            results.append({"image_id": img["id"], "category_id": cat["id"], "score": 0.3,
                            "keypoints": np.c_[rng.uniform(0, 200, (k, 2)), np.ones(k)].ravel().tolist()})
    return {"images": images, "annotations": anns, "categories": categories}, results


def _pycocotools(gt: dict, results: list[dict], sigmas: list[float] | None = None,
                 cat_ids: list[int] | None = None) -> list[float]:
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = copy.deepcopy(gt)
        coco_gt.createIndex()
        coco_eval = COCOeval(coco_gt, coco_gt.loadRes(copy.deepcopy(results)), iouType="keypoints")
        if sigmas is not None:
            coco_eval.params.kpt_oks_sigmas = np.array(sigmas)
        if cat_ids is not None:
            coco_eval.params.catIds = cat_ids
        coco_eval.evaluate()
        coco_eval.accumulate()
        coco_eval.summarize()
    return [100 * v for v in coco_eval.stats]


PERSON = {"id": 1, "name": "person", "keypoints": list(COCO_PERSON_KEYPOINTS), "skeleton": []}


def test_person_keypoints_equal_pycocotools_with_the_built_in_sigmas() -> None:
    gt, results = _case([PERSON])
    got = evaluate(gt, results, "keypoints")["keypoints"]
    expected = _pycocotools(gt, results)
    assert list(got) == list(KEYPOINT_METRIC_NAMES)
    assert np.allclose([-100 if got[n] is None else got[n] for n in KEYPOINT_METRIC_NAMES], expected)
    assert 10 < got["AP"] < 95


def test_per_category_sigmas_equal_pycocotools_per_category() -> None:
    tri = {"id": 3, "name": "tri", "keypoints": ["a", "b", "c"], "kpt_sigmas": [0.05, 0.08, 0.1]}
    sq = {"id": 5, "name": "sq", "keypoints": ["a", "b", "c", "d"], "kpt_sigmas": [0.03] * 4}
    gt, results = _case([tri, sq], seed=1)
    got = evaluate(gt, results, "keypoints")["keypoints"]
    per_category = [_pycocotools(gt, [r for r in results if r["category_id"] == c["id"]], c["kpt_sigmas"],
                                 [c["id"]])[0] for c in (tri, sq)]
    assert per_category[0] != per_category[1]
    assert np.isclose(got["AP"], np.mean(per_category))


def test_perfect_results_score_100() -> None:
    gt, _ = _case([PERSON], seed=2)
    results = [{"image_id": a["image_id"], "category_id": 1, "score": 1.0, "keypoints": a["keypoints"]}
               for a in gt["annotations"] if a["num_keypoints"] > 0]
    assert evaluate(gt, results, "keypoints")["keypoints"]["AP"] == pytest.approx(100)


def test_category_without_sigmas_is_an_error_unless_given() -> None:
    cat = {"id": 2, "name": "hand", "keypoints": ["a", "b"]}
    gt, results = _case([cat], seed=3)
    with pytest.raises(DenseVisionError, match=r"category 2 \(hand\) has keypoints but no OKS sigmas"):
        evaluate(gt, results, "keypoints")
    got = evaluate(gt, results, "keypoints", kpt_sigmas=[0.07, 0.07])["keypoints"]
    assert np.isclose(got["AP"], _pycocotools(gt, results, [0.07, 0.07])[0])
    with pytest.raises(DenseVisionError, match="2 keypoints need as many positive OKS sigmas"):
        evaluate(gt, results, "keypoints", kpt_sigmas=[0.07])
    wrong = [{**results[0], "keypoints": results[0]["keypoints"][:3]}]
    with pytest.raises(DenseVisionError, match="3 keypoint values, category 2 needs 3 x 2"):
        evaluate(gt, wrong, "keypoints", kpt_sigmas=[0.07, 0.07])


def test_eval_cli_keypoints(tmp_path, capsys) -> None:
    cat = {"id": 2, "name": "hand", "keypoints": ["a", "b"]}
    gt, results = _case([cat], seed=4)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    args = ["eval", "--gt", str(tmp_path / "gt.json"), "--results", str(tmp_path / "res.json"),
            "--iou-types", "keypoints"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no OKS sigmas" in err and "--kpt-sigmas" in err
    assert main([*args, "--kpt-sigmas", "0.07", "0.07", "--out", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert np.isclose(metrics["keypoints"]["AP"], _pycocotools(gt, results, [0.07, 0.07])[0])
    assert "keypoints" in capsys.readouterr().out
    assert main([*args[:5], "--kpt-sigmas", "0.07", "0.07", "--per-class", "--out", str(tmp_path / "d.json")]) == 0
    default = json.loads((tmp_path / "d.json").read_text())  # keypoint results: keypoints AP by default
    assert list(default) == ["keypoints", "per_class"] and default["keypoints"] == metrics["keypoints"]
    assert [(r["name"], np.isclose(r["AP"], metrics["keypoints"]["AP"])) for r in default["per_class"]["keypoints"]] \
        == [("hand", True)]
