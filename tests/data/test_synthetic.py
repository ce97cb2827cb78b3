import hashlib
import json

import cv2
import numpy as np

from densevision.data.coco import CocoDetection, validate_coco
from densevision.data.synthetic import CATEGORIES, generate


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
