"""``densevision bpr``: patches -> train -> refine -> evaluate end to end with a tiny network, the detector
source, and one-line errors."""

from __future__ import annotations

import json

import pytest
import torch

from densevision.cli import main
from densevision.data.coco import read_json
from densevision.data.synthetic import generate
from densevision.evaluation import evaluate

TINY = ["--model-arg", "width=4", "--model-arg", "stage1_blocks=1", "--model-arg", "stage1_planes=8",
        "--model-arg", "num_modules=[1, 1, 1]", "--model-arg", "num_blocks=[1, 1, 1]", "--model-arg", "stem_width=8"]


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
    from densevision.detection import build_mask_rcnn

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
])
def test_errors_are_one_line(data, tmp_path, capsys, args, message):
    values = {"missing": str(tmp_path / "missing"), "val_json": str(data["val_json"]),
              "val_results": str(data["val_results"])}
    assert main(["bpr", *(a.format(**values) for a in args)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"densevision bpr {args[0]}: error: ") and message in err and "\n" not in err
