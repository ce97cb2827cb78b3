"""Label-map layouts: ADE20K (pairing, reduce-zero-label), Cityscapes (pairing across cities, the trainIds
advice), COCO instances drawn as label maps (crowd = 255, smaller instances on top), and the format switch."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from densevision.data.labelmaps import LabelMapDataset, label_map_problems, load_label
from densevision.data.seg_formats import (
    ADE20K_CLASSES,
    CITYSCAPES_CLASSES,
    ade20k_data,
    cityscapes_data,
    coco_label_pairs,
    label_map_data,
)
from densevision.errors import DataError, DenseVisionError

H, W = 32, 48


def _save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _image() -> np.ndarray:
    return np.full((H, W, 3), 100, np.uint8)


def test_builtin_class_lists():
    assert len(ADE20K_CLASSES) == len(set(ADE20K_CLASSES)) == 150
    assert (ADE20K_CLASSES[0], ADE20K_CLASSES[7], ADE20K_CLASSES[-1]) == ("wall", "bed", "flag")
    assert len(CITYSCAPES_CLASSES) == 19 and CITYSCAPES_CLASSES[13] == "car"


def test_ade20k_pairs_by_stem_and_reduces_zero(tmp_path):
    base = tmp_path / "ADEChallengeData2016"
    raw = np.full((H, W), 1, np.uint8)
    raw[:4] = 0  # "other": ignored
    raw[10:20, 10:30] = 150  # the last class, "flag"
    for stem in ("ADE_train_00000002", "ADE_train_00000001"):
        _save(base / "images" / "training" / f"{stem}.jpg", _image())
        _save(base / "annotations" / "training" / f"{stem}.png", raw)
    _save(base / "annotations" / "training" / "ADE_train_00000009.png", raw)  # no image: left out

    for root in (tmp_path, base):  # the parent of ADEChallengeData2016, or the folder itself
        data = ade20k_data(root)
        assert data.classes == list(ADE20K_CLASSES) and data.reduce_zero and data.val is None
        assert [image.stem for image, _ in data.train.checked()] == ["ADE_train_00000001", "ADE_train_00000002"]
        assert len(data.train.extra) == 1 and "ADE_train_00000009.png: no image" in data.train.extra[0]

    _, label = LabelMapDataset(data.train.checked(), 150, reduce_zero=True)[0]
    assert set(label[:4].unique().tolist()) == {255}
    assert label[15, 15] == 149 and label[25, 5] == 0
    assert label_map_problems(data.train, 150, reduce_zero=True) == data.train.extra

    with pytest.raises(DataError, match="not an ADE20K folder"):
        ade20k_data(tmp_path / "ADEChallengeData2016" / "images")


def test_cityscapes_pairs_across_cities_and_lists_missing_labels(tmp_path):
    label = np.zeros((H, W), np.uint8)
    label[:, 24:] = 13
    label[0] = 255
    for split, city, name in (("train", "aachen", "aachen_000000_000019"), ("train", "bochum", "bochum_000000_000313"),
                              ("val", "frankfurt", "frankfurt_000000_000294")):
        _save(tmp_path / "leftImg8bit" / split / city / f"{name}_leftImg8bit.png", _image())
        _save(tmp_path / "gtFine" / split / city / f"{name}_gtFine_labelTrainIds.png", label)
        _save(tmp_path / "gtFine" / split / city / f"{name}_gtFine_labelIds.png", np.full((H, W), 7))
    data = cityscapes_data(tmp_path)
    assert data.classes == list(CITYSCAPES_CLASSES) and not data.reduce_zero
    pairs = data.train.checked()
    assert [(i.parent.name, lbl.name) for i, lbl in pairs] == [
        ("aachen", "aachen_000000_000019_gtFine_labelTrainIds.png"),
        ("bochum", "bochum_000000_000313_gtFine_labelTrainIds.png")]
    np.testing.assert_array_equal(load_label(pairs[0][1]), label)
    assert [i.name for i, _ in data.val.checked()] == ["frankfurt_000000_000294_leftImg8bit.png"]
    assert label_map_problems(data.val, 19) == []

    _save(tmp_path / "leftImg8bit" / "train" / "bochum" / "bochum_000000_000400_leftImg8bit.png", _image())
    with pytest.raises(DataError, match="bochum_000000_000400_leftImg8bit.png: no label file .*labelTrainIds"):
        cityscapes_data(tmp_path).train.checked()


def test_cityscapes_with_only_label_ids_says_how_to_make_train_ids(tmp_path):
    _save(tmp_path / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png", _image())
    _save(tmp_path / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelIds.png", np.full((H, W), 7))
    with pytest.raises(DataError) as info:
        cityscapes_data(tmp_path)
    message = str(info.value)
    assert "\n" not in message and "only *_gtFine_labelIds.png" in message
    assert "createTrainIdLabelImgs" in message and f"CITYSCAPES_DATASET={tmp_path}" in message


def test_coco_instances_drawn_as_label_maps(tiny_coco):
    ann, root, data = tiny_coco  # categories 7 "seven" and 0 "zero"; image 11: a square and a crowd region
    classes, split = coco_label_pairs(ann, root)
    assert classes == ["background", "zero", "seven"]  # category id order
    assert [image.name for image, _ in split.checked()] == ["im0.png", "im1.png", "im2.png"]
    labels = [load_label(label) for _, label in split.pairs]
    assert labels[0][15, 15] == 1 and labels[0][0, 0] == 0
    assert labels[1][10, 40] == 2 and labels[1][30, 5] == 255 and labels[1][0, 0] == 0  # crowd: ignored
    assert not labels[2].any()
    assert str(split.pairs[1][1]) == f"{ann}: image id 11"
    assert label_map_problems(split, 3) == []

    # a small instance on a larger one stays visible, whichever comes first; instances cover a crowd region
    big = [[0, 0, 40, 0, 40, 30, 0, 30]]
    small = [[10, 10, 20, 10, 20, 20, 10, 20]]
    data["annotations"] = [
        {"id": 1, "image_id": 12, "category_id": 0, "segmentation": small},
        {"id": 2, "image_id": 12, "category_id": 7, "segmentation": big},
        {"id": 3, "image_id": 12, "category_id": 0, "iscrowd": 1, "segmentation": [[30, 20, 59, 20, 59, 39, 30, 39]]},
    ]
    ann.write_text(json.dumps(data))
    label = load_label(coco_label_pairs(ann)[1].pairs[2][1])
    assert label[15, 15] == 1 and label[5, 5] == 2 and label[25, 35] == 2 and label[35, 50] == 255


def test_coco_drawing_of_the_synthetic_set_equals_its_label_pngs(tmp_path):
    from densevision.data.labelmaps import read_classes
    from densevision.data.synthetic import generate

    generate(tmp_path, train=0, val=2, size=64, progress=False)
    classes, split = coco_label_pairs(tmp_path / "annotations" / "instances_val.json", tmp_path / "val")
    assert classes == read_classes(tmp_path / "classes.json")
    for image, label in split.checked():
        drawn, written = load_label(label), load_label(tmp_path / "labels" / "val" / f"{image.stem}.png")
        kept = written != 255  # shapes too small to be annotated are 255 in the PNGs, background when drawn
        np.testing.assert_array_equal(drawn[kept], written[kept])
        assert not drawn[~kept].any()


def test_coco_categories_must_agree_between_splits(tiny_coco, tmp_path):
    ann, root, data = tiny_coco
    data["categories"][0]["name"] = "eight"
    other = tmp_path / "val.json"
    other.write_text(json.dumps(data))
    with pytest.raises(DataError, match="categories differ"):
        label_map_data("coco", train_json=ann, train_images=root, val_json=other, val_images=root)
    with pytest.raises(DenseVisionError, match="--val-json and --val-images go together"):
        label_map_data("coco", train_json=ann, train_images=root, val_json=ann)


def test_format_switch_names_the_flags_that_do_not_belong(tmp_path):
    with pytest.raises(DenseVisionError, match="--classes does not go with --format ade20k"):
        label_map_data("ade20k", data=tmp_path, classes="classes.json")
    with pytest.raises(DenseVisionError, match="--reduce-zero-label does not go with --format cityscapes"):
        label_map_data("cityscapes", data=tmp_path, reduce_zero_label=True)
    with pytest.raises(DenseVisionError, match="--format cityscapes needs --data ROOT"):
        label_map_data("cityscapes")
    with pytest.raises(DenseVisionError, match="--train-labels does not go with --format coco"):
        label_map_data("coco", train_labels=tmp_path)
    with pytest.raises(DenseVisionError, match="--data does not go with --format generic"):
        label_map_data("generic", data=tmp_path)
    with pytest.raises(DenseVisionError, match="--val-images and --val-labels go together"):
        label_map_data("generic", classes="c.json", val_images=tmp_path)
