"""``densevision seg train -> predict -> eval`` end to end on tiny synthetic data, and its one-line errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from densevision.cli import main
from densevision.data.synthetic import generate


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, train=4, val=2, size=64, progress=False)
    return root


@pytest.fixture(scope="module")
def run_dir(synth, tmp_path_factory):
    run = tmp_path_factory.mktemp("runs") / "seg"
    code = main([
        "seg", "train", "--train-images", str(synth / "train"), "--train-labels", str(synth / "labels" / "train"),
        "--val-images", str(synth / "val"), "--val-labels", str(synth / "labels" / "val"),
        "--classes", str(synth / "classes.json"), "--backbone", "hrnet_w18_small", "--head", "upernet",
        "--channels", "16", "--aux-channels", "8", "--crop", "48", "48", "--iters", "3", "--batch-size", "2",
        "--warmup-iters", "1", "--lr", "1e-3", "--out", str(run), "--device", "cpu", "--no-progress",
        "--set", "model.backbone_kwargs={width: 8}", "--set", "data.scale=null", "--set", "train.tensorboard=false",
    ])
    assert code == 0
    return run


def test_synth_writes_label_maps_of_the_same_scenes(synth):
    classes = json.loads((synth / "classes.json").read_text())["classes"]
    assert classes == ["background", "triangle", "square", "star", "ellipse", "ring"]
    ann = json.loads((synth / "annotations" / "instances_val.json").read_text())
    for image in ann["images"]:
        label = Image.open(synth / "labels" / "val" / image["file_name"])
        assert label.mode == "P" and label.size == (image["width"], image["height"])
        values = set(np.unique(np.asarray(label)).tolist())
        cats = {a["category_id"] for a in ann["annotations"] if a["image_id"] == image["id"]}
        assert values - {0, 255} == cats  # 255: shapes too small to annotate


def test_train_predict_eval(run_dir, synth, tmp_path, capsys):
    assert (run_dir / "last.pt").is_file() and (run_dir / "config.yaml").is_file()
    pred = tmp_path / "pred"
    assert main(["seg", "predict", "--checkpoint", str(run_dir), "--images", str(synth / "val"), "--out", str(pred),
                 "--device", "cpu", "--no-progress"]) == 0
    files = sorted(pred.glob("*.png"))
    assert [f.name for f in files] == sorted(p.name for p in (synth / "val").glob("*.png"))
    assert Image.open(files[0]).size == (64, 64) and Image.open(files[0]).mode == "P"
    slide = tmp_path / "slide"
    assert main(["seg", "predict", "--checkpoint", str(run_dir), "--images", str(synth / "val" / files[0].name),
                 "--out", str(slide), "--mode", "slide", "--crop", "40", "40", "--stride", "24", "24",
                 "--device", "cpu", "--no-progress"]) == 0
    assert Image.open(slide / files[0].name).size == (64, 64)
    metrics = tmp_path / "metrics.json"
    capsys.readouterr()
    assert main(["seg", "eval", "--pred", str(pred), "--labels", str(synth / "labels" / "val"),
                 "--classes", str(synth / "classes.json"), "--out", str(metrics)]) == 0
    assert "mIoU" in capsys.readouterr().out
    result = json.loads(metrics.read_text())
    assert set(result) == {"aAcc", "mIoU", "mAcc", "boundary_mIoU", "per_class"}
    assert set(result["per_class"]) == {"background", "triangle", "square", "star", "ellipse", "ring"}
    assert 0 <= result["aAcc"] <= 100


def test_eval_names_a_label_value_beyond_the_classes(synth, tmp_path, capsys):
    labels = tmp_path / "labels"
    labels.mkdir()
    bad = np.zeros((8, 8), np.uint8)
    bad[0, :5] = 17
    Image.fromarray(bad).save(labels / "a.png")
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    code = main(["seg", "eval", "--pred", str(tmp_path), "--labels", str(labels), "--classes",
                 str(synth / "classes.json"), "--out", str(tmp_path / "m.json")])
    err = capsys.readouterr().err
    assert code == 2 and "a.png: values 17 (5 px)" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.json").exists()


def test_predict_refuses_to_write_into_its_input(run_dir, synth):
    assert main(["seg", "predict", "--checkpoint", str(run_dir), "--images", str(synth / "val"),
                 "--out", str(synth / "val"), "--device", "cpu"]) == 2


def test_data_check_reports_label_values_beyond_the_classes(synth, tmp_path, capsys):
    common = ["--images", str(synth / "val"), "--classes", str(synth / "classes.json")]
    assert main(["data", "check", "--labels", str(synth / "labels" / "val"), *common]) == 0
    labels = tmp_path / "labels"
    labels.mkdir()
    names = sorted(p.name for p in (synth / "val").glob("*.png"))
    bad = np.zeros((64, 64), np.uint8)
    bad[:2, :3] = 40
    Image.fromarray(bad).save(labels / names[0])
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(labels / names[1])
    capsys.readouterr()
    assert main(["data", "check", "--labels", str(labels), *common]) == 2
    out = capsys.readouterr().out
    assert f"{names[0]}: values outside the 6 classes and ignore 255: value 40: 6 px" in out
    assert f"{names[1]} is RGB" in out
