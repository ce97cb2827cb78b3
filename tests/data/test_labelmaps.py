"""Label maps: reading (greyscale, palette, RGB refused), reduce-zero-label, pairing, checks, the train pipeline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.data.labelmaps import (
    LabelMapDataset,
    SegTrainTransform,
    label_map_problems,
    match_by_stem,
    read_classes,
    read_label_map,
    reduce_zero_label,
    write_classes,
    write_label_map,
)
from densevision.errors import DataError


def _data(tmp_path, labels: dict[str, np.ndarray], images: dict[str, tuple[int, int]] | None = None):
    (tmp_path / "img").mkdir()
    (tmp_path / "lbl").mkdir()
    images = images or {stem: label.shape for stem, label in labels.items()}
    for stem, (h, w) in images.items():
        Image.fromarray(np.full((h, w, 3), 90, np.uint8)).save(tmp_path / "img" / f"{stem}.jpg")
    for stem, label in labels.items():
        Image.fromarray(label.astype(np.uint8)).save(tmp_path / "lbl" / f"{stem}.png")
    return tmp_path / "img", tmp_path / "lbl"


def test_palette_png_round_trip_and_reduce_zero_label(tmp_path):
    label = np.array([[0, 1, 2], [255, 3, 0]], np.uint8)
    write_label_map(tmp_path / "a.png", label)
    assert Image.open(tmp_path / "a.png").mode == "P"
    np.testing.assert_array_equal(read_label_map(tmp_path / "a.png"), label)
    np.testing.assert_array_equal(read_label_map(tmp_path / "a.png", reduce_zero=True),
                                  [[255, 0, 1], [255, 2, 255]])
    np.testing.assert_array_equal(reduce_zero_label(np.array([0, 1, 255], np.uint8)), [255, 0, 255])


def test_rgb_label_files_are_refused(tmp_path):
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(DataError, match="rgb.png is RGB: its values are colours"):
        read_label_map(tmp_path / "rgb.png")


def test_classes_json_forms(tmp_path):
    write_classes(tmp_path / "c.json", ["sky", "road"])
    assert read_classes(tmp_path / "c.json") == ["sky", "road"]
    (tmp_path / "l.json").write_text('["a", "b", "a"]')
    with pytest.raises(DataError, match="repeat"):
        read_classes(tmp_path / "l.json")


def test_pairs_by_stem_and_missing_labels(tmp_path):
    images, labels = _data(tmp_path, {"a": np.zeros((4, 4))}, {"a": (4, 4), "b": (4, 4), "c": (4, 4)})
    with pytest.raises(DataError, match=r"b.jpg: no label file .*b.png \(and 1 more image\(s\) without a label"):
        match_by_stem(images, labels).checked()
    (labels / "b.png").write_bytes((labels / "a.png").read_bytes())
    (labels / "c.png").write_bytes((labels / "a.png").read_bytes())
    assert [(i.name, lbl.name) for i, lbl in match_by_stem(images, labels).checked()] == [
        ("a.jpg", "a.png"), ("b.jpg", "b.png"), ("c.jpg", "c.png")]
    for image in images.iterdir():
        image.unlink()
    with pytest.raises(DataError, match="no image files"):
        match_by_stem(images, labels).checked()


def test_problems_name_file_value_and_pixel_count(tmp_path):
    bad = np.zeros((6, 6))
    bad[0, :3] = 9
    bad[1, 0] = 255
    images, labels = _data(tmp_path, {"a": bad, "b": np.zeros((5, 5))}, {"a": (6, 6), "b": (5, 7)})
    Image.fromarray(np.zeros((2, 2), np.uint8)).save(labels / "orphan.png")
    problems = label_map_problems(match_by_stem(images, labels), 3)
    assert any("a.png" in p and "value 9: 3 px" in p for p in problems)
    assert any("b.png: label is 5x5, image b.jpg is 7x5" in p for p in problems)
    assert any("orphan.png: no image" in p for p in problems)
    assert not any("255" in p and "a.png" in p and "value 255" in p for p in problems)
    dataset = LabelMapDataset(match_by_stem(images, labels).checked()[:1], 3)
    with pytest.raises(DataError, match="value 9 \\(3 px\\)"):
        dataset[0]


def test_train_pipeline_crops_pads_with_ignore_and_balances_classes():
    torch.manual_seed(0)
    image = torch.rand(3, 20, 30)
    label = torch.zeros(20, 30, dtype=torch.long)
    label[:, 20:] = 1  # only crops starting at x in 9..14 have no class above 75 %
    transform = SegTrainTransform((16, 16), scale=None, ratio_range=(1.0, 1.0), flip=0.0, photometric=False)
    for _ in range(5):
        img, lbl = transform(image, label)
        assert img.shape == (3, 16, 16) and lbl.shape == (16, 16)
        assert set(lbl.unique().tolist()) == {0, 1}  # cat_max_ratio retries find a crop with both classes
    small = SegTrainTransform((32, 40), scale=None, ratio_range=(1.0, 1.0))
    img, lbl = small(image, label)
    assert img.shape == (3, 32, 40) and (lbl[20:] == 255).all() and (lbl[:, 30:] == 255).all()
    rescaled = SegTrainTransform((64, 64), scale=(40, 10), ratio_range=(2.0, 2.0), cat_max_ratio=1.0)
    _, lbl = rescaled(image, label)
    assert int((lbl != 255).sum()) == 20 * 30  # fits in (80, 20): factor min(80/30, 20/20) = 1



def test_results_render_higher_scores_on_top():
    from pycocotools import mask as mask_utils

    from densevision.data.labelmaps import results_to_label_map

    def result(cat, score, y0, x0):
        m = np.zeros((8, 8), np.uint8)
        m[y0:y0 + 4, x0:x0 + 4] = 1
        rle = mask_utils.encode(np.asfortranarray(m))
        return {"category_id": cat, "score": score, "segmentation": {"size": [8, 8], "counts": rle["counts"].decode()}}

    results = [result(2, 0.9, 2, 2), result(1, 0.6, 0, 0), result(3, 0.4, 4, 4)]
    label = results_to_label_map(results, 8, 8, score_thr=0.5)
    assert label[3, 3] == 2 and label[0, 0] == 1 and label[5, 5] == 2 and label[7, 7] == 0
    assert results_to_label_map(results[::-1], 8, 8, score_thr=0.5).tolist() == label.tolist()
    assert results_to_label_map(results, 8, 8, score_thr=0.3)[7, 7] == 3
