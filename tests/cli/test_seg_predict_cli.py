"""``densevision seg predict`` with test-time augmentation and overlays, on a tiny untrained segmenter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.cli import main
from densevision.data.images import read_image
from densevision.data.labelmaps import image_tensor, read_label_map
from densevision.engine.checkpoint import MODEL_SPEC
from densevision.segmentation.model import build_segmenter, load_segmenter, segmenter_spec
from densevision.segmentation.predict import predict_image


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    model = build_segmenter("hrnet_w18_small", "fpn", 3, channels=8, fpn_channels=8, classes=["a", "b", "c"],
                            backbone_kwargs={"width": 8})
    path = tmp_path_factory.mktemp("run") / "model.pt"
    torch.save({"model": model.state_dict(), MODEL_SPEC: segmenter_spec(model)}, path)
    return path


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for name, size in (("a.png", (40, 56)), ("b.png", (33, 47))):
        Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(folder / name)
    return folder


def test_tta_and_overlays(checkpoint, images, tmp_path, capsys):
    out, viz = tmp_path / "labels", tmp_path / "viz"
    common = ["seg", "predict", "--checkpoint", str(checkpoint), "--images", str(images), "--device", "cpu",
              "--no-progress"]
    assert main([*common, "--out", str(out), "--tta-scales", "0.75", "1.0", "1.25", "--flip", "--viz", str(viz)]) == 0
    assert f"overlays in {viz}" in capsys.readouterr().out
    for name in ("a.png", "b.png"):
        with Image.open(images / name) as image:
            size = image.size
        assert Image.open(out / name).size == size
        overlay = Image.open(viz / name)
        assert overlay.mode == "RGB" and overlay.width > size[0] and overlay.height >= size[1]
    model = load_segmenter(checkpoint)
    expected = predict_image(model, image_tensor(read_image(images / "a.png")), scales=[0.75, 1.0, 1.25], flip=True)
    assert np.array_equal(read_label_map(out / "a.png"), expected.numpy())


def test_overlays_may_not_replace_the_label_maps(checkpoint, images, tmp_path, capsys):
    code = main(["seg", "predict", "--checkpoint", str(checkpoint), "--images", str(images), "--out",
                 str(tmp_path / "o"), "--viz", str(tmp_path / "o"), "--device", "cpu"])
    assert code == 2 and "--viz" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["seg", "predict", "--checkpoint", str(checkpoint), "--images", str(images), "--out",
                 str(tmp_path / "p"), "--tta-scales", "0", "--device", "cpu"]) == 2
