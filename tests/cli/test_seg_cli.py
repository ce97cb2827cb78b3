"""``densevision seg train -> predict -> eval`` end to end on tiny synthetic data and on hand-made ADE20K-,
Cityscapes- and COCO-format data, ``data check`` on those layouts, and the one-line errors."""

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


TINY = ["--backbone", "hrnet_w18_small", "--head", "fpn", "--channels", "16", "--fpn-channels", "16", "--crop", "32",
        "32", "--iters", "2", "--batch-size", "2", "--warmup-iters", "1", "--lr", "1e-3", "--device", "cpu",
        "--no-progress", "--set", "model.backbone_kwargs={width: 8}", "--set", "data.scale=null",
        "--set", "train.tensorboard=false"]
H, W = 32, 48


def _scene(k: int) -> tuple[np.ndarray, np.ndarray]:
    """A 32×48 image with a bright rectangle on dark noise, and the rectangle's mask."""
    image = np.random.default_rng(k).integers(0, 60, (H, W, 3), dtype=np.uint8)
    mask = np.zeros((H, W), bool)
    mask[4 + 2 * k:20 + 2 * k, 6 + 4 * k:26 + 4 * k] = True
    image[mask] += 150
    return image, mask


def _save(path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def _ade20k(root) -> dict:
    """ADEChallengeData2016 with 2 training and 1 validation image: 1 = wall, 3 = sky, 0 = other (a band)."""
    for k, (split, stem) in enumerate((("training", "ADE_train_00000001"), ("training", "ADE_train_00000002"),
                                       ("validation", "ADE_val_00000001"))):
        image, mask = _scene(k)
        raw = np.where(mask, 3, 1)
        raw[-2:] = 0
        _save(root / "ADEChallengeData2016" / "images" / split / f"{stem}.jpg", image)
        _save(root / "ADEChallengeData2016" / "annotations" / split / f"{stem}.png", raw)
    return {"train": ["--format", "ade20k", "--data", str(root)], "eval": ["--format", "ade20k", "--data", str(root)],
            "val_images": [root / "ADEChallengeData2016" / "images" / "validation"], "classes": 150}


def _cityscapes(root) -> dict:
    """leftImg8bit / gtFine with two training cities and one validation city: 0 = road, 13 = car, 255 (a band)."""
    for k, (split, city) in enumerate((("train", "aachen"), ("train", "bochum"), ("val", "frankfurt"))):
        image, mask = _scene(k)
        label = np.where(mask, 13, 0)
        label[:2] = 255
        name = f"{city}_000000_000019"
        _save(root / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", image)
        _save(root / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png", label)
    return {"train": ["--format", "cityscapes", "--data", str(root)],
            "eval": ["--format", "cityscapes", "--data", str(root)],
            "val_images": [root / "leftImg8bit" / "val" / "frankfurt"], "classes": 19}


def _coco(root) -> dict:
    """COCO instance files: the rectangle as a polygon of category 5 "box", a crowd region of category 2 "bar"."""
    for split, ks in (("train", (0, 1)), ("val", (2,))):
        images, annotations = [], []
        for k in ks:
            image, mask = _scene(k)
            _save(root / split / f"{k:06d}.png", image)
            ys, xs = np.nonzero(mask)
            x0, y0, x1, y1 = int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1
            images.append({"id": k + 1, "file_name": f"{k:06d}.png", "height": H, "width": W})
            annotations += [
                {"id": 2 * k + 1, "image_id": k + 1, "category_id": 5, "iscrowd": 0,
                 "bbox": [x0, y0, x1 - x0, y1 - y0], "segmentation": [[x0, y0, x1, y0, x1, y1, x0, y1]]},
                {"id": 2 * k + 2, "image_id": k + 1, "category_id": 2, "iscrowd": 1, "bbox": [40, 24, 8, 8],
                 "segmentation": [[40, 24, 48, 24, 48, 32, 40, 32]]}]
        (root / f"{split}.json").write_text(json.dumps({
            "images": images, "annotations": annotations,
            "categories": [{"id": 5, "name": "box"}, {"id": 2, "name": "bar"}]}))
    return {"train": ["--format", "coco", "--train-json", str(root / "train.json"), "--train-images",
                      str(root / "train"), "--val-json", str(root / "val.json"), "--val-images", str(root / "val")],
            "eval": ["--format", "coco", "--val-json", str(root / "val.json")], "val_images": [root / "val"],
            "classes": 3}


@pytest.mark.parametrize("layout", [_ade20k, _cityscapes, _coco], ids=["ade20k", "cityscapes", "coco"])
def test_train_predict_eval_on_each_format(layout, tmp_path, capsys):
    data = layout(tmp_path / "data")
    run = tmp_path / "run"
    assert main(["seg", "train", *data["train"], *TINY, "--out", str(run)]) == 0
    assert "mIoU" in capsys.readouterr().out  # validated on the format's validation split
    pred = tmp_path / "pred"
    for folder in data["val_images"]:
        assert main(["seg", "predict", "--checkpoint", str(run), "--images", str(folder), "--out", str(pred),
                     "--device", "cpu", "--no-progress"]) == 0
    assert all(Image.open(p).size == (W, H) for p in pred.glob("*.png"))
    metrics = tmp_path / "metrics.json"
    assert main(["seg", "eval", "--pred", str(pred), *data["eval"], "--out", str(metrics)]) == 0
    result = json.loads(metrics.read_text())
    assert len(result["per_class"]) == data["classes"] and 0 <= result["aAcc"] <= 100


def test_data_check_on_the_ade20k_and_cityscapes_layouts(tmp_path, capsys):
    ade, city = _ade20k(tmp_path / "ade"), _cityscapes(tmp_path / "city")
    assert main(["data", "check", *ade["train"]]) == 0
    assert "3 label maps, 150 classes" in capsys.readouterr().out
    assert main(["data", "check", *city["train"]]) == 0
    bad = tmp_path / "ade" / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png"
    raw = np.ones((H, W), np.uint8)
    raw[:3, :4] = 160  # 159 after reduce-zero-label: beyond the 150 classes
    _save(bad, raw)
    wrong = tmp_path / "city" / "gtFine" / "train" / "bochum" / "bochum_000000_000019_gtFine_labelTrainIds.png"
    _save(wrong, np.full((H, W), 26))  # a Cityscapes id (car), not a trainId
    capsys.readouterr()
    assert main(["data", "check", *ade["train"]]) == 2
    assert f"{bad}: values outside the 150 classes and ignore 255: value 159: 12 px" in capsys.readouterr().out
    assert main(["data", "check", *city["train"]]) == 2
    assert f"{wrong}: values outside the 19 classes and ignore 255: value 26: {H * W} px" in capsys.readouterr().out
    assert main(["data", "check", *city["train"], "--classes", "c.json"]) == 2
    assert "--classes does not go with --format cityscapes" in capsys.readouterr().err


def test_seg_eval_and_train_refuse_flags_of_another_format(tmp_path, capsys):
    assert main(["seg", "eval", "--pred", str(tmp_path), "--format", "ade20k", "--labels", str(tmp_path)]) == 2
    assert "--labels does not go with --format ade20k" in capsys.readouterr().err
    assert main(["seg", "train", "--format", "coco", "--data", str(tmp_path), *TINY,
                 "--out", str(tmp_path / "run")]) == 2
    assert "--data does not go with --format coco" in capsys.readouterr().err


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
