"""``densevision bpr``: patches -> train -> refine -> evaluate end to end with a tiny network, the detector
source, and one-line errors."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import pytest
import torch

from densevision.cli import main
from densevision.data.jsonio import read_json
from densevision.data.masks import annotation_to_mask
from densevision.data.synthetic import generate
from densevision.detection import build_mask_rcnn
from densevision.evaluation import evaluate
from densevision.refine.network import build_refine_net, refine_net_spec

TINY = ["--model-arg", "width=4", "--model-arg", "stage1_blocks=1", "--model-arg", "stage1_planes=8",
        "--model-arg", "num_modules=[1, 1, 1]", "--model-arg", "num_blocks=[1, 1, 1]", "--model-arg", "stem_width=8"]


TINY_NET = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": [1, 1, 1], "num_blocks": [1, 1, 1],
            "stem_width": 8}


def _results_from_ground_truth(ann_path, out_path):
    """The ground truth written as a detector's results (polygons become RLE in the refined output)."""
    data = read_json(ann_path)
    results = [{"image_id": a["image_id"], "category_id": a["category_id"], "score": 0.9,
                "segmentation": a["segmentation"], "bbox": a["bbox"]} for a in data["annotations"]]
    out_path.write_text(json.dumps(results))
    return out_path


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("bpr_cli")
    paths = generate(root / "synth", train=3, val=2, size=80, seed=5, progress=False)
    return {"root": root, "synth": root / "synth", "val_json": paths["val"],
            "train_results": _results_from_ground_truth(paths["train"], root / "train_results.json"),
            "val_results": _results_from_ground_truth(paths["val"], root / "val_results.json")}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A run directory holding an untrained tiny refiner (16 px patches)."""
    run = tmp_path_factory.mktemp("bpr_run")
    torch.manual_seed(0)
    net = build_refine_net(input_size=32, patch_size=16, **TINY_NET)
    torch.save({"model": net.state_dict(), "model_spec": refine_net_spec(net)}, run / "best.pt")
    return run


def test_patches_train_refine_evaluate(data, capsys):
    root, synth = data["root"], data["synth"]
    patches, run, refined = root / "patches", root / "run", root / "refined.json"
    assert main(["bpr", "patches", "--results", str(data["train_results"]), "--data", str(synth),
                 "--out", str(patches), "--patch-size", "16", "--shard-size", "50"]) == 0
    assert "patches of" in capsys.readouterr().out
    assert main(["bpr", "train", "--patches", str(patches), "--out", str(run), *TINY, "--input-size", "32",
                 "--iters", "3", "--batch", "4", "--eval-every", "3", "--checkpoint-every", "3", "--workers", "0",
                 "--no-tensorboard", "--device", "cpu", "--no-progress"]) == 0
    assert "3 iterations; miou" in capsys.readouterr().out
    assert (run / "best.pt").is_file() and (run / "config.yaml").is_file()
    assert main(["bpr", "refine", "--ann", str(data["val_json"]), "--images", str(synth / "val"),
                 "--results", str(data["val_results"]), "--checkpoint", str(run), "--out", str(refined),
                 "--batch", "16", "--device", "cpu"]) == 0
    out = json.loads(refined.read_text())
    coarse = json.loads(data["val_results"].read_text())
    assert len(out) == len(coarse)
    assert [(r["image_id"], r["category_id"], r["score"]) for r in out] == \
        [(r["image_id"], r["category_id"], r["score"]) for r in coarse]
    metrics = evaluate(data["val_json"], str(refined), ["segm", "boundary"])
    assert all(isinstance(metrics[t]["AP"], float) for t in ("segm", "boundary"))


def test_patches_from_a_detector_checkpoint(data, tmp_path, capsys):
    torch.manual_seed(0)
    detector = build_mask_rcnn("timm:mobilenetv3_small_050", 5, min_size=64, max_size=96)
    categories = [{"id": c["id"], "name": c["name"]} for c in read_json(data["val_json"])["categories"]]
    checkpoint = tmp_path / "det.pt"
    torch.save({"model": detector.state_dict(),
                "config": {"detector": {"model": detector.config, "categories": categories}}}, checkpoint)
    out = tmp_path / "patches"
    assert main(["bpr", "patches", "--checkpoint", str(checkpoint), "--data", str(data["synth"]), "--split", "val",
                 "--out", str(out), "--patch-size", "16", "--device", "cpu"]) == 0
    index = json.loads((out / "index.json").read_text())
    assert index["images"] <= 2 and index["patches"] == sum(s["patches"] for s in index["shards"])


def test_refine_without_ground_truth_reads_the_results_image_list(data, run, tmp_path, capsys):
    """`detect predict` without --ann writes RES.images.json; `bpr refine` then needs only --images and --results."""
    val = read_json(data["val_json"])
    folder = tmp_path / "images"
    folder.mkdir()
    for img in val["images"]:
        (folder / img["file_name"]).write_bytes((data["synth"] / "val" / img["file_name"]).read_bytes())
    torch.manual_seed(0)
    detector = build_mask_rcnn("timm:mobilenetv3_small_050", 5, min_size=64, max_size=96, box_detections_per_img=4)
    categories = [{"id": c["id"], "name": c["name"]} for c in val["categories"]]
    torch.save({"model": detector.state_dict(),
                "config": {"detector": {"model": detector.config, "categories": categories}}}, tmp_path / "det.pt")
    assert main(["detect", "predict", "--checkpoint", str(tmp_path / "det.pt"), "--images", str(folder),
                 "--out", str(tmp_path / "res.json"), "--score-thr", "0", "--device", "cpu", "--no-progress"]) == 0
    assert (tmp_path / "res.images.json").is_file()
    coarse = json.loads((tmp_path / "res.json").read_text())
    assert coarse
    out = tmp_path / "refined.json"
    assert main(["bpr", "refine", "--images", str(folder), "--results", str(tmp_path / "res.json"),
                 "--checkpoint", str(run), "--out", str(out), "--device", "cpu", "--no-progress"]) == 0
    refined = json.loads(out.read_text())
    assert [(r["image_id"], r["score"], r["bbox"]) for r in refined] == \
        [(r["image_id"], r["score"], r["bbox"]) for r in coarse]
    (tmp_path / "res.images.json").unlink()
    assert main(["bpr", "refine", "--images", str(folder), "--results", str(tmp_path / "res.json"),
                 "--checkpoint", str(run), "--out", str(out), "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert "no image list" in err and "res.images.json" in err and "--ann" in err and "\n" not in err


def test_refine_score_threshold_and_top_k_keep_the_others_coarse(data, run, tmp_path, capsys):
    coarse = [{**r, "score": round(0.1 + 0.2 * (i % 5), 2)}
              for i, r in enumerate(read_json(data["val_results"]))]
    results, out = tmp_path / "res.json", tmp_path / "refined.json"
    results.write_text(json.dumps(coarse))
    assert main(["bpr", "refine", "--ann", str(data["val_json"]), "--images", str(data["synth"] / "val"),
                 "--results", str(results), "--checkpoint", str(run), "--out", str(out), "--score-thr", "0.5",
                 "--top-k", "2", "--min-area", "0", "--device", "cpu", "--no-progress"]) == 0
    refined = read_json(out)
    below = sum(r["score"] < 0.5 for r in coarse)
    per_image = Counter(r["image_id"] for r in coarse if r["score"] >= 0.5)
    beyond = sum(max(0, n - 2) for n in per_image.values())
    assert below and beyond
    line = capsys.readouterr().out.strip()
    assert line == (f"{out}: {len(coarse)} instances, {len(coarse) - below - beyond} refined, {below + beyond} kept "
                    f"coarse ({below} scoring below 0.5, {beyond} beyond the top 2 of their image)")
    same = [np.array_equal(annotation_to_mask(r["segmentation"], 80, 80), annotation_to_mask(c["segmentation"], 80, 80))
            for r, c in zip(refined, coarse, strict=True)]
    assert all(s for s, c in zip(same, coarse, strict=True) if c["score"] < 0.5)
    assert not all(same)  # the untrained refiner changed some of the others
    assert [(r["image_id"], r["score"], r["bbox"]) for r in refined] == \
        [(r["image_id"], r["score"], r["bbox"]) for r in coarse]


def _square_rle(y0: int, x0: int, side: int = 20, size: int = 64) -> dict:
    import numpy as np
    from pycocotools import mask as mask_utils

    mask = np.zeros((size, size), np.uint8, order="F")
    mask[y0:y0 + side, x0:x0 + side] = 1
    rle = mask_utils.encode(mask)
    return {"size": [size, size], "counts": rle["counts"].decode("ascii")}


def test_upper_bound_reports_restored_ap(tmp_path, capsys):
    """Two ground-truth squares, detections shifted by 1 px and one false positive: every width restores the
    matched masks exactly (AP 100), the false positive stays and costs nothing at score 0.1 below them."""
    gt = {"images": [{"id": 1, "file_name": "a.png", "height": 64, "width": 64}],
          "categories": [{"id": 1, "name": "square"}],
          "annotations": [{"id": k + 1, "image_id": 1, "category_id": 1, "segmentation": _square_rle(y, x),
                           "area": 400.0, "bbox": [x, y, 20, 20], "iscrowd": 0}
                          for k, (y, x) in enumerate(((4, 4), (36, 36)))]}
    coarse = [{"image_id": 1, "category_id": 1, "score": s, "segmentation": _square_rle(y, x),
               "bbox": [x, y, 20, 20]} for s, (y, x) in ((0.9, (5, 4)), (0.8, (36, 37)), (0.1, (40, 2)))]
    ann, results, out = tmp_path / "gt.json", tmp_path / "coarse.json", tmp_path / "bound.json"
    ann.write_text(json.dumps(gt))
    results.write_text(json.dumps(coarse))
    assert main(["bpr", "refine", "--upper-bound", "--ann", str(ann), "--results", str(results),
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "| coarse |" in printed and "| 1 px | 100.00 (+" in printed and "| 3 px |" in printed
    report = json.loads(out.read_text())
    assert report["widths"] == [1, 2, 3] and list(report["metrics"]) == ["coarse", "1 px", "2 px", "3 px"]
    assert report["metrics"]["coarse"]["segm"]["AP"] == pytest.approx(90.0)  # IoU 19/21 = 0.905 misses only 0.95
    assert report["metrics"]["coarse"]["boundary"]["AP"] < 90.0
    for width in ("1 px", "2 px", "3 px"):
        assert report["metrics"][width]["segm"]["AP"] == pytest.approx(100.0)
        assert report["metrics"][width]["boundary"]["AP"] == pytest.approx(100.0)
    assert main(["bpr", "refine", "--upper-bound", "--results", str(results), "--out", str(out)]) == 2
    assert "--upper-bound needs the ground truth" in capsys.readouterr().err
    assert main(["bpr", "refine", "--upper-bound", "--ann", str(ann), "--results", str(results),
                 "--out", str(results)]) == 2
    assert "is the input --results" in capsys.readouterr().err


@pytest.mark.parametrize("args,message", [
    (["patches", "--results", "r.json", "--data", "d", "--ann", "a.json", "--out", "o"], "either --data or"),
    (["patches", "--results", "r.json", "--ann", "a.json", "--out", "o"], "--ann and --images"),
    (["train", "--patches", "{missing}", "--out", "o"], "no index.json"),
    (["train", "--patches", "{missing}", "--out", "o", "--set", "train.lrr=1"],
     "--set: unknown key train.lrr (did you mean train.lr?)"),
    (["train", "--patches", "{missing}", "--out", "o", "--set", "model.input_size=big"],
     "--set: model.input_size must be int, got 'big'"),
    (["train", "--patches", "{missing}", "--out", "o", "--device", "tpu"],
     "expected auto, cpu, cuda or cuda:N, got 'tpu'"),
    (["refine", "--ann", "{val_json}", "--images", "x", "--results", "{val_results}", "--checkpoint",
      "{missing}", "--out", "o.json"], "checkpoint file or run directory not found"),
    (["refine", "--ann", "{val_json}", "--results", "{val_results}", "--out", "o.json"],
     "--checkpoint and --images are required (unless --upper-bound)"),
    (["refine", "--ann", "{val_json}", "--images", "x", "--results", "{val_results}", "--checkpoint",
      "{missing}", "--out", "o.json", "--top-k", "0"], "top-k must be at least 1"),
])
def test_errors_are_one_line(data, tmp_path, capsys, args, message):
    values = {"missing": str(tmp_path / "missing"), "val_json": str(data["val_json"]),
              "val_results": str(data["val_results"])}
    assert main(["bpr", *(a.format(**values) for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"densevision bpr {args[0]}: error: ") and message in err and "\n" not in err
