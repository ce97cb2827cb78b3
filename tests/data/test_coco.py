import json

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.data.coco import CocoDetection, validate_coco
from densevision.data.images import read_image
from densevision.errors import DataError


def test_dataset_targets(tiny_coco):
    ann, root, _ = tiny_coco
    ds = CocoDetection(ann, root)
    assert len(ds) == 3
    assert ds.label_to_cat == {1: 0, 2: 7}  # sorted by id: category 0 becomes label 1
    assert ds.class_names == ["zero", "seven"]

    image, t = ds[0]
    assert image.shape == (3, 40, 60) and image.dtype == torch.float32
    assert float(image.min()) >= 0.0 and float(image.max()) <= 1.0
    assert t["labels"].tolist() == [1]
    assert t["boxes"].tolist() == [[10.0, 10.0, 20.0, 20.0]]
    assert t["masks"].shape == (1, 40, 60) and t["masks"].dtype == torch.uint8
    assert int(t["masks"].sum()) > 90  # a 10×10 polygon
    assert int(t["image_id"]) == 10

    _, t = ds[1]
    assert t["labels"].tolist() == [2, 2]
    assert t["iscrowd"].tolist() == [0, 1]
    assert int(t["masks"][0].sum()) == 400  # compressed RLE: 20×20
    assert int(t["masks"][1].sum()) == 180  # uncompressed RLE: 18×10
    assert bool(t["masks"][1, 20:38, 2:12].all())

    _, t = ds[2]
    assert t["boxes"].shape == (0, 4) and t["masks"].shape == (0, 40, 60) and t["labels"].numel() == 0


def test_dataset_can_drop_crowd(tiny_coco):
    ann, root, _ = tiny_coco
    _, t = CocoDetection(ann, root, include_crowd=False)[1]
    assert t["iscrowd"].tolist() == [0]


def _problems(data, root=None):
    return validate_coco(data, "ann.json", root)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda d: d["annotations"][0].update(bbox=[1, 1, 0, 5]), "annotation id 1: bbox [1, 1, 0, 5] has width"),
        (lambda d: d["annotations"][0].update(segmentation=[[1, 1, 2, 2]]), "annotation id 1: segmentation polygon"),
        (lambda d: d["annotations"][0].update(image_id=99), "annotation id 1: refers to unknown image id 99"),
        (lambda d: d["annotations"][0].update(category_id=3), "annotation id 1: refers to unknown category id 3"),
        (lambda d: d["annotations"][0].update(bbox="x"), "annotation id 1: 'bbox' must be a list"),
        (lambda d: d["annotations"][0].pop("segmentation"), "annotation id 1: missing 'segmentation'"),
        (lambda d: d["images"][0].update(height="40"), "image id 10: 'height' and 'width'"),
        (lambda d: d.pop("categories"), "missing or non-list key 'categories'"),
        (lambda d: d["annotations"][1]["segmentation"].update(size=[4, 4]), "annotation id 2: segmentation size"),
    ],
)
def test_validation_names_file_and_id(tiny_coco, mutate, expected):
    _, _, data = tiny_coco
    mutate(data)
    problems = _problems(data)
    assert len(problems) == 1
    assert problems[0].startswith("ann.json: ")
    assert expected in problems[0]


def test_validation_checks_image_files(tiny_coco, tmp_path):
    _, root, data = tiny_coco
    data["images"][0]["file_name"] = "../ann.json"
    data["images"][1]["file_name"] = "missing.png"
    (root / "broken.png").write_bytes(b"not a png")
    data["images"][2]["file_name"] = "broken.png"
    problems = _problems(data, root)
    assert len(problems) == 3
    assert "image id 10: file_name '../ann.json' escapes the image root" in problems[0]
    assert "image id 11: image file" in problems[1] and "not found" in problems[1]
    assert "image id 12: image file" in problems[2] and "unreadable" in problems[2]


def test_valid_file_has_no_problems(tiny_coco):
    _, root, data = tiny_coco
    assert _problems(data, root) == []


def test_dataset_refuses_bad_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DataError, match=r"bad.json: not valid JSON \(.* at line 1 column 2\)"):
        CocoDetection(bad, tmp_path)


def test_dataset_missing_image_names_id(tiny_coco):
    ann, root, _ = tiny_coco
    ds = CocoDetection(ann, root)
    (root / "im1.png").unlink()
    with pytest.raises(DataError, match=r"ann.json: image id 11: image file .*im1.png not found"):
        ds[1]  # gone after the data set was built
    with pytest.raises(DataError, match=r"ann.json: image id 11: image file .*im1.png not found$"):
        CocoDetection(ann, root)  # refused when it is built, before any training starts


@pytest.mark.parametrize("mode", ["L", "RGBA", "I;16", "P"])
def test_read_image_any_mode(tmp_path, mode):
    arr = np.arange(20 * 30, dtype=np.uint16).reshape(20, 30)
    if mode == "I;16":
        im = Image.fromarray((arr * 100).astype(np.uint16))
    else:
        im = Image.fromarray((arr % 256).astype(np.uint8)).convert(mode)
    path = tmp_path / "x.png"
    im.save(path)
    out = read_image(path)
    assert out.shape == (20, 30, 3) and out.dtype == np.uint8
    assert out.max() > 0


def test_json_with_wrong_top_level(tmp_path):
    p = tmp_path / "a.json"
    p.write_text(json.dumps([1, 2]))
    assert "top level must be an object" in validate_coco(json.loads(p.read_text()), str(p))[0]
