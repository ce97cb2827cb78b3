import hashlib
import json

import cv2
import numpy as np
import pytest

from densevision.data.coco import CocoDetection, validate_coco
from densevision.data.synthetic import CATEGORIES, existing_outputs, generate
from densevision.errors import DenseVisionError


def _digest(folder):
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_same_seed_same_bytes(tmp_path):
    generate(tmp_path / "a", train=2, val=1, size=128, seed=5, progress=False)
    generate(tmp_path / "b", train=2, val=1, size=128, seed=5, progress=False)
    generate(tmp_path / "c", train=2, val=1, size=128, seed=6, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")


def test_an_existing_data_set_is_kept_unless_overwrite(tmp_path):
    generate(tmp_path, train=0, val=2, size=64, seed=0, progress=False)
    assert existing_outputs(tmp_path, ["train"]) == ["classes.json"]
    assert existing_outputs(tmp_path / "new", ["train", "val"]) == []
    image = tmp_path / "val" / "000001.png"
    before = image.read_bytes()
    with pytest.raises(DenseVisionError, match=r"already holds a data set \(annotations/instances_val.json, val/, "
                                               r"labels/val/, classes.json\)"):
        generate(tmp_path, train=0, val=1, size=64, seed=1, progress=False)
    assert image.read_bytes() == before
    generate(tmp_path, train=0, val=1, size=64, seed=1, overwrite=True, progress=False)
    assert image.read_bytes() != before
    assert len(json.loads((tmp_path / "annotations" / "instances_val.json").read_text())["images"]) == 1


def test_generated_set_is_valid_and_varied(tmp_path):
    paths = generate(tmp_path, train=0, val=12, size=192, seed=1, progress=False)
    assert set(paths) == {"val"}
    data = json.loads(paths["val"].read_text())
    assert validate_coco(data, "val", tmp_path / "val") == []
    assert {c["name"] for c in data["categories"]} == {c["name"] for c in CATEGORIES}
    assert len({a["category_id"] for a in data["annotations"]}) >= 4
    side = np.array([max(a["bbox"][2], a["bbox"][3]) for a in data["annotations"]]) / 192
    assert side.min() < 0.12 and side.max() > 0.35

    ds = CocoDetection(paths["val"], tmp_path / "val")
    rings_with_holes = 0
    for i in range(len(ds)):
        _, t = ds[i]
        assert len(t["masks"]) > 0
        assert (t["masks"].flatten(1).sum(1) >= 16).all()
        assert int(t["masks"].sum(0).max()) <= 1  # occlusion: visible parts never overlap
        for m, label in zip(t["masks"], t["labels"], strict=True):
            if ds.class_names[int(label) - 1] == "ring":
                _, hierarchy = cv2.findContours(m.numpy(), cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
                rings_with_holes += bool((hierarchy[0][:, 3] >= 0).any())
    assert rings_with_holes >= 1


def test_labels_ignore_unannotated_shapes_and_leave_images_alone(tmp_path):
    """Images keep their bytes (digest of the generator before label maps existed; the annotations' own test is
    in test_synthetic_keypoints.py); a shape too small to annotate is 255 in its label map, annotated shapes
    carry their category id."""
    from densevision.data.labelmaps import read_classes, read_label_map
    from densevision.data.masks import annotation_to_mask
    from densevision.data.synthetic import render_scene, semantic_label

    generate(tmp_path, train=3, val=2, size=96, seed=3, progress=False)
    h = hashlib.sha256()
    for p in sorted(tmp_path.rglob("*.png")):
        if "labels" not in p.parts:
            h.update(p.read_bytes())
    assert h.hexdigest() == "357c72ee8aed85c85d7fb745584c1e558692e02b445db30e4df293a93e6f12aa"
    assert read_classes(tmp_path / "classes.json") == ["background", *(c["name"] for c in CATEGORIES)]

    data = json.loads((tmp_path / "annotations" / "instances_train.json").read_text())
    for image in data["images"]:
        label = read_label_map(tmp_path / "labels" / "train" / image["file_name"])
        annotated = np.zeros_like(label)
        for ann in (a for a in data["annotations"] if a["image_id"] == image["id"]):
            annotated[annotation_to_mask(ann["segmentation"], 96, 96) > 0] = ann["category_id"]
        known = label != 255
        assert (label[known] == annotated[known]).all()
        assert (annotated[~known] == 0).all()

    # A scene with shapes too small to annotate: exactly their pixels are ignored.
    found = 0
    for i in range(40):
        rng = np.random.default_rng([0, 0, i])
        _, visible, unannotated = render_scene(96, rng)
        label = semantic_label(96, visible, unannotated)
        assert ((label == 255) == unannotated).all()
        if unannotated.any():
            found += 1
            for _, mask, _ in visible:
                assert not (unannotated & (mask > 0)).any()
    assert found > 0
