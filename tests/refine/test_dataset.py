"""Training patches: matching detections to ground truth, shards and index, the dataset, splits, augmentation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils

from densevision.data.images import read_image
from densevision.data.jsonio import read_json
from densevision.data.masks import annotation_to_mask
from densevision.errors import DataError, DenseVisionError
from densevision.refine.dataset import PatchDataset, build_patch_dataset, match_detections


def test_match_detections_respects_categories(rle_of):
    a = np.zeros((20, 20), np.uint8)
    a[2:10, 2:10] = 1
    b = np.zeros((20, 20), np.uint8)
    b[3:11, 3:11] = 1
    dts, gts = [rle_of(a), rle_of(b), rle_of(a)], [rle_of(b), rle_of(a)]
    match, iou = match_detections(dts, [1, 1, 3], gts, [1, 2])
    assert match.tolist() == [0, 0, -1]
    expected = float(mask_utils.iou([dts[0]], [gts[0]], [0])[0, 0])
    assert iou[0] == pytest.approx(expected) and iou[1] == pytest.approx(1.0) and iou[2] == 0
    match, iou = match_detections(dts, [1, 1, 3], [], [])
    assert match.tolist() == [-1, -1, -1] and not iou.any()


@pytest.fixture(scope="module")
def patch_dir(synth, tmp_path_factory):
    """Patches of the coarse training results plus two detections that must be dropped."""
    data = read_json(synth["train"])
    results = json.loads((synth["root"] / "coarse_train.json").read_text())
    wrong_category = {**results[0], "category_id": 1 + results[0]["category_id"] % 5}
    far_away = {**results[1], "segmentation": [[0, 0, 5, 0, 5, 5, 0, 5]]}
    out = tmp_path_factory.mktemp("bpr") / "patches"
    index = build_patch_dataset(data, synth["root"] / "train", [*results, wrong_category, far_away], out,
                                patch_size=16, shard_size=40, progress=False)
    return out, index, data, results


def test_index_counts_and_shards(patch_dir):
    out, index, data, results = patch_dir
    assert index["detections"] == len(results) + 2
    assert 0 < index["instances"] <= len(results)
    assert index["patch_size"] == 16 and index["nms_iou"] == 0.25 and index["match_iou"] == 0.5
    assert index["patches"] == sum(s["patches"] for s in index["shards"])
    assert [s["patches"] for s in index["shards"][:-1]] == [40] * (len(index["shards"]) - 1)
    assert json.loads((out / "index.json").read_text()) == index
    assert sorted(p.name for p in out.iterdir()) == ["index.json", *[s["file"] for s in index["shards"]]]


def test_patches_are_crops_of_image_coarse_and_matched_ground_truth(patch_dir, synth):
    out, index, data, results = patch_dir
    shard = torch.load(out / index["shards"][0]["file"], weights_only=True)
    info = {img["id"]: img for img in data["images"]}
    for k in (0, 7, len(shard["box"]) - 1):
        image_id = int(shard["image_id"][k])
        h, w = info[image_id]["height"], info[image_id]["width"]
        x0, y0, x1, y1 = shard["box"][k].tolist()
        assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h and x1 - x0 == 16
        image = read_image(synth["root"] / "train" / info[image_id]["file_name"])
        assert np.array_equal(shard["image"][k].permute(1, 2, 0).numpy(), image[y0:y1, x0:x1])
        coarse = shard["coarse"][k].numpy()
        candidates = [annotation_to_mask(r["segmentation"], h, w)[y0:y1, x0:x1] for r in results
                      if r["image_id"] == image_id]
        assert any(np.array_equal(coarse, c) for c in candidates)
        gts = [annotation_to_mask(a["segmentation"], h, w)[y0:y1, x0:x1] for a in data["annotations"]
               if a["image_id"] == image_id]
        assert any(np.array_equal(shard["gt"][k].numpy(), g) for g in gts)
        assert not np.array_equal(coarse, shard["gt"][k].numpy())  # a boundary patch shows the 1-px dilation


def test_existing_patch_folder_is_refused(patch_dir, synth):
    out, _, data, results = patch_dir
    with pytest.raises(DenseVisionError, match="already holds"):
        build_patch_dataset(data, synth["root"] / "train", results, out, progress=False)


def test_splits_partition_by_instance(patch_dir):
    out, index, _, _ = patch_dir
    full = PatchDataset(out)
    train, val = PatchDataset(out, split="train", val_every=3), PatchDataset(out, split="val", val_every=3)
    assert len(full) == index["patches"] == len(train) + len(val) and len(val) > 0
    image, coarse, gt = full[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and 0 <= image.min() <= image.max() <= 1
    assert coarse.shape == gt.shape == (16, 16) and coarse.dtype == torch.uint8 and gt.dtype == torch.int64
    with pytest.raises(IndexError):
        full[len(full)]


def test_augmentation_flips_all_three_together(patch_dir):
    out, _, _, _ = patch_dir
    plain, augmented = PatchDataset(out), PatchDataset(out, augment=True)
    torch.manual_seed(0)
    flips = 0
    for i in range(12):
        image, coarse, gt = plain[i]
        a_image, a_coarse, a_gt = augmented[i]
        flipped = not torch.equal(a_coarse, coarse) or not torch.equal(a_gt, gt)
        flips += flipped
        if flipped:
            coarse, gt, image = coarse.flip(-1), gt.flip(-1), image.flip(-1)
        assert torch.equal(a_coarse, coarse) and torch.equal(a_gt, gt)
        assert a_image.shape == image.shape and (a_image - image).abs().max() < 0.6
    assert 0 < flips < 12


def test_broken_folders_are_reported(patch_dir, tmp_path):
    out, index, _, _ = patch_dir
    with pytest.raises(DataError, match="no index.json"):
        PatchDataset(tmp_path)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "index.json").write_text(json.dumps(index))
    with pytest.raises(DataError, match="missing"):
        PatchDataset(copy)
    for shard in index["shards"]:
        (copy / shard["file"]).write_bytes(b"not a torch file")
    with pytest.raises(DataError, match="unreadable patch shard"):
        PatchDataset(copy)
    torch.save({"image": torch.zeros(1)}, copy / index["shards"][0]["file"])
    with pytest.raises(DataError, match="'image' is missing or not of shape"):
        PatchDataset(copy)
    (copy / "index.json").write_text(json.dumps({**index, "version": 99}))
    with pytest.raises(DataError, match="version 99"):
        PatchDataset(copy)
