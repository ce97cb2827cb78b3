"""Image records and reading: the one safe path rule in every reader, full decoding, one-line worker errors."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from densevision.cli import main
from densevision.data.coco import CocoDetection, validate_coco
from densevision.data.images import (
    ImageDataset,
    ImageRecord,
    load_image,
    read_image,
    records_from_coco,
    safe_image_path,
)
from densevision.data.loader import OneLineErrorLoader
from densevision.detection.predict import run_detector
from densevision.errors import DataError
from densevision.refine.dataset import build_patch_dataset


@pytest.fixture
def escapes(tiny_coco, tmp_path):
    """``tiny_coco`` plus an image outside its root and three names leading to it: ``../``, absolute, a
    symlink inside the root."""
    ann, root, data = tiny_coco
    outside = tmp_path / "outside.png"
    outside.write_bytes((root / "im0.png").read_bytes())
    (root / "link.png").symlink_to(outside)
    return ann, root, data, {"dots": "../outside.png", "absolute": str(outside), "symlink": "link.png"}


KINDS = ["dots", "absolute", "symlink"]
REFUSED = r"file_name .* (escapes the image root|is an absolute path)"


@pytest.mark.parametrize("kind", KINDS)
def test_safe_image_path(escapes, kind):
    _, root, _, names = escapes
    with pytest.raises(DataError, match=rf"^ann.json: image id 3: {REFUSED}"):
        safe_image_path(root, names[kind], "ann.json: image id 3")
    assert safe_image_path(root, "sub/../im0.png", "x") == (root / "im0.png").resolve()


@pytest.mark.parametrize("kind", KINDS)
def test_every_reader_refuses_escaping_paths(escapes, kind, tmp_path):
    ann, root, data, names = escapes
    data["images"][0]["file_name"] = names[kind]
    ann.write_text(json.dumps(data))
    expected = rf"^{ann}: image id 10: {REFUSED}"
    with pytest.raises(DataError, match=expected):  # predict
        records_from_coco(ann, root)
    problems = validate_coco(data, str(ann), root)  # data check
    assert len(problems) == 1 and "image id 10: file_name" in problems[0]
    with pytest.raises(DataError, match=expected):  # training
        CocoDetection(ann, root)[0]
    results = [{"image_id": 10, "category_id": 0, "score": 1.0, "segmentation": data["annotations"][0]["segmentation"]}]
    with pytest.raises(DataError, match=expected):  # BPR patches
        build_patch_dataset(ann, root, results, tmp_path / "patches", progress=False)


def test_data_check_decodes_every_image(tiny_coco, capsys):
    ann, root, data = tiny_coco
    png = (root / "im1.png").read_bytes()
    (root / "im1.png").write_bytes(png[: len(png) // 2])
    with Image.open(root / "im1.png") as im:
        assert im.size == (60, 40)  # the header alone looks fine
    assert main(["data", "check", str(ann), "--images", str(root)]) == 2
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{ann}: image id 11: image file ") and "is unreadable" in out[0]
    assert out[-1] == "1 problem(s) found"


def test_record_errors_name_json_and_id(tiny_coco):
    _, root, _ = tiny_coco
    record = ImageRecord(11, root / "im1.png", "im1.png", 40, 61, "ann.json")
    with pytest.raises(DataError, match=r"^ann.json: image id 11: .*im1.png is 60x40, the json says 61x40$"):
        load_image(record)
    with pytest.raises(DataError, match=r"^image id 4: image file .*nope.png not found$"):
        load_image(ImageRecord(4, root / "nope.png", "nope.png"))
    assert read_image(root / "im1.png").shape == (40, 60, 3)


def _bad_images(root) -> ImageDataset:
    (root / "im2.png").write_bytes(b"not a png")
    return ImageDataset([ImageRecord(10 + k, root / f"im{k}.png", f"im{k}.png", 40, 60, "ann.json") for k in range(3)])


@pytest.mark.parametrize("workers", [0, 1])
def test_worker_errors_stay_one_line(tiny_coco, workers):
    _, root, _ = tiny_coco
    loader = OneLineErrorLoader(_bad_images(root), batch_size=1, num_workers=workers, collate_fn=list)
    batches = iter(loader)
    assert len(next(batches)) == 1 and len(next(batches)) == 1
    with pytest.raises(DataError) as info:
        next(batches)
    assert str(info.value).startswith("ann.json: image id 12: image file ") and "\n" not in str(info.value)
    assert len(loader) == 3


def test_prediction_with_workers_reports_the_bad_image(tiny_coco):
    _, root, _ = tiny_coco
    model = torch.nn.Linear(1, 1)
    with pytest.raises(DataError) as info:
        run_detector(model, _bad_images(root), {1: 1}, batch_size=4, num_workers=1)
    assert str(info.value).startswith("ann.json: image id 12: image file ") and "\n" not in str(info.value)
