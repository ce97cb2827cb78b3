"""``densevision train`` -> ``predict`` -> ``eval``: predictions score exactly as the in-training evaluation."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from densevision.cli import main
from densevision.data.synthetic import generate
from densevision.detection.predict import export_detector

TINY = [f"--set=model.{key}={value}" for key, value in {
    "fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16,
    "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20, "box_detections_per_img": 8, "box_score_thresh": 0.0,
}.items()]
BACKBONE = "timm:mobilenetv3_small_050"


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 2-iteration run with evaluation on synthetic data (64² images)."""
    root = tmp_path_factory.mktemp("cli")
    generate(root / "data", train=3, val=2, size=64, seed=1, progress=False)
    config = root / "train.yaml"
    config.write_text("train:\n  lr: 0.01\n  warmup_iters: 1\n")
    code = main(["train", "--data", str(root / "data"), "--backbone", BACKBONE, "--out", str(root / "run"),
                 "--iters", "2", "--batch-size", "2", "--device", "cpu", "--seed", "3", *TINY,
                 "--config", str(config), "--no-progress"])
    assert code == 0
    return root


def test_run_dir_holds_everything_to_rebuild(trained):
    state = torch.load(trained / "run" / "last.pt", weights_only=True)
    spec = state["model_spec"]
    assert spec["builder"] == "mask_rcnn" and spec["config"]["backbone"] == BACKBONE
    assert spec["config"]["num_classes"] == 5
    assert [c["name"] for c in spec["meta"]["categories"]] == ["triangle", "square", "star", "ellipse", "ring"]
    assert state["config"]["train"]["lr"] == 0.01  # from --config
    saved = yaml.safe_load((trained / "run" / "config.yaml").read_text())
    assert saved == state["config"] and set(saved) == {"data", "model", "train"}


def test_bad_set_key_or_type_exits_2_naming_the_key(trained, tmp_path, capsys):
    base = ["train", "--data", str(trained / "data"), "--out", str(tmp_path / "r"), "--device", "cpu"]
    assert main([*base, "--set", "train.lrr=0.1"]) == 2
    assert "--set: unknown key train.lrr (did you mean train.lr?)" in _error_line(capsys)
    assert main([*base, "--set", "train.iters=many"]) == 2
    assert "--set: train.iters must be int, got 'many'" in _error_line(capsys)
    (tmp_path / "bad.yaml").write_text("model:\n  heads: huge\n")
    assert main([*base, "--config", str(tmp_path / "bad.yaml")]) == 2
    assert "bad.yaml: model.heads must be one of light, torchvision, got 'huge'" in _error_line(capsys)
    assert main([*base, "--device", "tpu"]) == 2
    assert "expected auto, cpu, cuda or cuda:N, got 'tpu'" in _error_line(capsys)
    assert main([*base, "--resume"]) == 2
    assert "nothing to resume" in _error_line(capsys)
    assert not (tmp_path / "r").exists()


def test_predict_scores_exactly_like_the_in_training_evaluation(trained, capsys):
    data, out = trained / "data", trained / "pred.json"
    assert main(["predict", "--checkpoint", str(trained / "run"), "--images", str(data / "val"),
                 "--ann", str(data / "annotations" / "instances_val.json"), "--out", str(out),
                 "--device", "cpu", "--no-progress"]) == 0
    predicted = json.loads(out.read_text())
    assert predicted, "an untrained detector with score threshold 0 still returns detections"
    assert predicted == json.loads((trained / "run" / "eval" / "results.json").read_text())
    assert main(["eval", "--gt", str(data / "annotations" / "instances_val.json"), "--results", str(out),
                 "--out", str(trained / "metrics.json")]) == 0
    in_training = json.loads((trained / "run" / "eval" / "coco_metrics.json").read_text())
    assert json.loads((trained / "metrics.json").read_text()) == in_training
    logged = json.loads((trained / "run" / "metrics.json").read_text())["eval"][-1]
    assert logged["segm/AP"] == in_training["segm"]["AP"]
    assert "detections on 2 images" in capsys.readouterr().out


def test_predict_input_size_feeds_a_larger_image(trained, tmp_path, monkeypatch):
    predict_module = importlib.import_module("densevision.detection.predict")  # the package exports a function
    seen = []
    run_detector = predict_module.run_detector

    def spy(model, *args, **kwargs):
        seen.append((model.transform.min_size, model.transform.max_size))
        return run_detector(model, *args, **kwargs)

    monkeypatch.setattr(predict_module, "run_detector", spy)
    data = trained / "data"
    common = ["predict", "--checkpoint", str(trained / "run"), "--images", str(data / "val"),
              "--ann", str(data / "annotations" / "instances_val.json"), "--device", "cpu", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "a.json"), "--input-size", "96"]) == 0
    assert main([*common, "--out", str(tmp_path / "b.json")]) == 0
    trained_size = torch.load(trained / "run" / "last.pt", weights_only=True)["model_spec"]["config"]
    assert seen[0][0] == (96,) and seen[1][0][-1] == trained_size["min_size"]
    assert (tmp_path / "a.json").read_text() != (tmp_path / "b.json").read_text()


def test_predict_on_a_folder_without_ann(trained, tmp_path):
    images = tmp_path / "imgs"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 70)) * 255).astype(np.uint8), "L").save(images / "b.png")
    Image.fromarray((rng.random((90, 30, 4)) * 255).astype(np.uint8), "RGBA").save(images / "a.png")
    Image.fromarray((rng.random((33, 33)) * 65535).astype(np.uint16)).save(images / "c.png")
    Image.fromarray((rng.random((3, 120, 3)) * 255).astype(np.uint8)).save(images / "c.jpg")
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "res.json"
    assert main(["predict", "--checkpoint", str(trained / "run" / "last.pt"), "--images", str(images),
                 "--out", str(out), "--viz", str(tmp_path / "viz"), "--viz-score-thr", "0",
                 "--score-thr", "0.01", "--batch-size", "3", "--device", "cpu", "--no-progress"]) == 0
    listing = json.loads((tmp_path / "res.images.json").read_text())
    assert [(i["id"], i["file_name"], i["height"], i["width"]) for i in listing["images"]] == [
        (1, "a.png", 90, 30), (2, "b.png", 40, 70), (3, "c.jpg", 3, 120), (4, "c.png", 33, 33)]
    assert [c["id"] for c in listing["categories"]] == [1, 2, 3, 4, 5]
    results = json.loads(out.read_text())
    assert all(r["score"] >= 0.01 and 1 <= r["category_id"] <= 5 for r in results)
    for r in results:
        h, w = r["segmentation"]["size"]
        assert (h, w) == {1: (90, 30), 2: (40, 70), 3: (3, 120), 4: (33, 33)}[r["image_id"]]
    assert sorted(p.name for p in (tmp_path / "viz").iterdir()) == ["a.png", "b.png", "c_3.png", "c_4.png"]
    with Image.open(tmp_path / "viz" / "a.png") as overlay:
        assert overlay.size == (30, 90) and overlay.mode == "RGB"


def test_exported_weights_predict_the_same(trained, tmp_path):
    path = export_detector(trained / "run", tmp_path / "detector.pt")
    assert set(torch.load(path, weights_only=True)) == {"model", "model_spec"}
    data = trained / "data"
    args = ["--images", str(data / "val"), "--ann", str(data / "annotations" / "instances_val.json"),
            "--device", "cpu", "--no-progress"]
    assert main(["predict", "--checkpoint", str(path), "--out", str(tmp_path / "a.json"), *args]) == 0
    assert json.loads((tmp_path / "a.json").read_text()) == json.loads(
        (trained / "run" / "eval" / "results.json").read_text())


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    return err[0]


def test_checkpoint_of_another_model_is_refused(trained, tmp_path, capsys):
    torch.save({"model": {"w": torch.zeros(1)}, "iteration": 1, "config": {}}, tmp_path / "other.pt")
    common = ["--images", str(trained / "data" / "val"), "--out", str(tmp_path / "x.json"), "--device", "cpu"]
    assert main(["predict", "--checkpoint", str(tmp_path / "other.pt"), *common]) == 2
    assert "not a densevision Mask R-CNN checkpoint" in _error_line(capsys)

    state = torch.load(trained / "run" / "last.pt", weights_only=True)
    state["model_spec"]["config"]["fpn_channels"] = 32
    torch.save(state, tmp_path / "mismatch.pt")
    assert main(["predict", "--checkpoint", str(tmp_path / "mismatch.pt"), *common]) == 2
    assert "checkpoint does not match" in _error_line(capsys)
    assert not (tmp_path / "x.json").exists()


def test_predict_input_errors(trained, tmp_path, capsys):
    ann = json.loads((trained / "data" / "annotations" / "instances_val.json").read_text())
    ann["categories"] = [dict(c, id=c["id"] + 100) for c in ann["categories"]]
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    base = ["predict", "--checkpoint", str(trained / "run"), "--out", str(tmp_path / "x.json"), "--device", "cpu"]
    assert main([*base, "--images", str(trained / "data" / "val"), "--ann", str(tmp_path / "ann.json")]) == 2
    assert "differ from the checkpoint's" in _error_line(capsys)
    ann["categories"] = [dict(c, id=c["id"] - 100) for c in ann["categories"]]
    ann["images"].append(dict(ann["images"][0]))
    (tmp_path / "ann.json").write_text(json.dumps(ann))
    assert main([*base, "--images", str(trained / "data" / "val"), "--ann", str(tmp_path / "ann.json")]) == 2
    assert f"image id {ann['images'][0]['id']} appears twice" in _error_line(capsys)
    assert main([*base, "--images", str(tmp_path / "nowhere")]) == 2
    assert "no such file or folder" in _error_line(capsys)
    assert main([*base, "--images", str(trained / "data" / "val"), "--input-size", "0"]) == 2
    assert "argument --input-size: expected a positive integer" in _error_line(capsys)
    assert main(["train", "--out", str(tmp_path / "r"), "--backbone", "no_such_net",
                 "--data", str(trained / "data"), "--iters", "1", "--device", "cpu"]) == 2
    assert "unknown model 'no_such_net'" in _error_line(capsys)
    assert main(["train", "--out", str(tmp_path / "r"), "--iters", "1"]) == 2
    assert "training data needed" in _error_line(capsys)


@pytest.mark.slow
def test_torchrun_two_processes(trained, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
           "-m", "densevision", "train", "--data", str(trained / "data"), "--backbone", BACKBONE,
           "--out", str(tmp_path / "run"), "--iters", "2", "--batch-size", "1", "--device", "cpu",
           *TINY, "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["iteration"] == 2 and state["data"]["world_size"] == 2
    assert json.loads((tmp_path / "run" / "eval" / "coco_metrics.json").read_text())["segm"]["AP"] is not None
