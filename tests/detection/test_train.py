"""train_detector: a short run per backbone family on synthetic data, resume, awkward images, data errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from densevision.data.synthetic import generate
from densevision.detection import build_mask_rcnn
from densevision.detection.config import DetectionDataConfig, DetectorTrainConfig, MaskRCNNConfig
from densevision.detection.predict import load_detector
from densevision.detection.train import data_layout, drop_degenerate, image_sizes_from_data, train_detector
from densevision.engine import TrainConfig, seed_everything
from densevision.errors import DataError, DenseVisionError

# Heads small enough that a CPU iteration takes well under a second.
TINY_HEADS = {
    "fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16,
    "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20, "box_detections_per_img": 5,
}
# One backbone per family, with tiny widths.
FAMILIES = {
    "timm": ("timm:mobilenetv3_small_050", {}),
    "hrnet": ("hrnet_w18_small", {"width": 8, "stage1_planes": 8, "num_blocks": (1, 1, 1)}),
    "swin": ("swin_tiny_patch4_window7_224", {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)}),
    "vit": ("vit_tiny_patch16_224", {"embed_dim": 32, "depth": 1, "num_heads": 1}),
    "cyclemlp": ("cyclemlp_b1", {"layers": (1, 1, 1, 1), "embed_dims": (8, 16, 16, 16)}),
    "asmlp": ("asmlp_tiny", {"embed_dim": 8, "depths": (1, 1, 1, 1)}),
}


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    generate(root, train=3, val=1, size=64, seed=0, progress=False)
    return root


def _config(data: dict, backbone="timm:mobilenetv3_small_050", *, model=None, **train) -> DetectorTrainConfig:
    options = {"iters": 2, "batch_size": 2, "warmup_iters": 1, "lr": 0.01, **train}
    paths = DetectionDataConfig(**{k: None if v is None else str(v) for k, v in data.items()})
    return DetectorTrainConfig(data=paths, model=MaskRCNNConfig(backbone=backbone, **{**TINY_HEADS, **(model or {})}),
                               train=TrainConfig(**options))


def _train(data_dir, out, backbone="timm:mobilenetv3_small_050", backbone_kwargs=None, freeze_at=0, resume=False,
           **train):
    config = _config(data_layout(data_dir), backbone, model={"backbone_kwargs": backbone_kwargs or {},
                                                             "freeze_at": freeze_at}, **train)
    return train_detector(config, out, device="cpu", resume=resume, progress=False)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_short_training_per_family(data_dir, tmp_path, family):
    backbone, kwargs = FAMILIES[family]
    freeze = {} if family == "vit" else {"freeze_at": 2}
    summary = _train(data_dir, tmp_path / "run", backbone, kwargs, **freeze)
    assert summary["iteration"] == 2
    assert np.isfinite(summary["losses"]["total_loss"])
    assert {"bbox/AP", "segm/AP", "boundary/AP"} <= set(summary["metrics"])
    run = tmp_path / "run"
    for name in ("config.yaml", "last.pt", "best.pt", "metrics.json", "eval/results.json", "eval/coco_metrics.json"):
        assert (run / name).is_file(), name
    model, info = load_detector(run)
    assert model.config["backbone"] == backbone and model.config["num_classes"] == 5
    assert model.config["min_size"] == 64 and model.config["max_size"] == 64  # from the data
    assert info.class_names == ["triangle", "square", "star", "ellipse", "ring"]
    assert info.label_to_cat == {1: 1, 2: 2, 3: 3, 4: 4, 5: 5}
    if freeze:  # the stem and stage 1 kept their initial weights, later stages trained
        seed_everything(0)
        initial = build_mask_rcnn(backbone, 5, min_size=64, max_size=64, backbone_kwargs=kwargs, **TINY_HEADS,
                                  **freeze)
        trained = dict(model.backbone.body.named_parameters())
        body = list(initial.backbone.body.named_parameters())
        frozen = [n for n, p in body if not p.requires_grad]
        assert frozen and len(frozen) < len(body)
        assert all(torch.equal(trained[n], p) for n, p in body if not p.requires_grad)
        assert any(not torch.equal(trained[n], p) for n, p in body if p.requires_grad)


def test_freeze_at_is_refused_for_bodies_without_stages():
    backbone, kwargs = FAMILIES["vit"]
    with pytest.raises(DenseVisionError, match="freeze_at is unsupported"):
        build_mask_rcnn(backbone, 2, backbone_kwargs=kwargs, freeze_at=1)


def test_resume_continues_exactly_from_the_checkpoint(data_dir, tmp_path):
    _train(data_dir, tmp_path / "a", checkpoint_every=1)
    (tmp_path / "b").mkdir()
    shutil.copy(tmp_path / "a" / "iter_0000001.pt", tmp_path / "b" / "last.pt")
    summary = _train(data_dir, tmp_path / "b", resume=True)
    assert summary["iteration"] == 2
    straight = torch.load(tmp_path / "a" / "last.pt", weights_only=True)["model"]
    resumed = torch.load(tmp_path / "b" / "last.pt", weights_only=True)["model"]
    first = torch.load(tmp_path / "a" / "iter_0000001.pt", weights_only=True)["model"]
    key = "roi_heads.box_predictor.cls_score.weight"
    assert not torch.equal(first[key], straight[key])
    assert all(torch.equal(straight[k], resumed[k]) for k in straight)
    with pytest.raises(DenseVisionError, match="already holds a training checkpoint"):
        _train(data_dir, tmp_path / "a")


def _write_awkward_set(root):
    """Grayscale, RGBA, 16-bit and odd-sized images, one instance each, category ids 10 and 20."""
    images, anns = [], []
    specs = [("gray.png", "L", (37, 81)), ("rgba.png", "RGBA", (64, 48)), ("deep.png", "I;16", (50, 50)),
             ("tall.png", "RGB", (120, 23))]
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    for k, (name, mode, (h, w)) in enumerate(specs):
        if mode == "I;16":
            arr = (rng.random((h, w)) * 65535).astype(np.uint16)
            Image.fromarray(arr).save(root / "img" / name)
        else:
            channels = {"L": 1, "RGBA": 4, "RGB": 3}[mode]
            arr = (rng.random((h, w, channels)) * 255).astype(np.uint8)
            Image.fromarray(arr.squeeze(-1) if channels == 1 else arr, mode).save(root / "img" / name)
        mask = np.zeros((h, w), np.uint8)
        mask[h // 4: 3 * h // 4, w // 4: 3 * w // 4] = 1
        rle = mask_utils.encode(np.asfortranarray(mask))
        images.append({"id": k + 1, "file_name": name, "height": h, "width": w})
        anns.append({"id": k + 1, "image_id": k + 1, "category_id": 10 if k % 2 else 20, "iscrowd": 0,
                     "area": float(mask.sum()), "bbox": mask_utils.toBbox(rle).tolist(),
                     "segmentation": {"size": [h, w], "counts": rle["counts"].decode()}})
    data = {"images": images, "annotations": anns,
            "categories": [{"id": 20, "name": "b"}, {"id": 10, "name": "a"}]}
    (root / "ann.json").write_text(json.dumps(data))
    return data


def test_awkward_images_train_and_evaluate(tmp_path):
    _write_awkward_set(tmp_path)
    ann, img = tmp_path / "ann.json", tmp_path / "img"
    data = {"train_json": ann, "train_images": img, "val_json": ann, "val_images": img}
    config = _config(data, model={"min_size": 48, "max_size": 96}, iters=1, batch_size=4, amp="auto")
    summary = train_detector(config, tmp_path / "run", device="cpu", progress=False)
    assert np.isfinite(summary["losses"]["total_loss"])
    results = json.loads((tmp_path / "run" / "eval" / "results.json").read_text())
    assert {r["category_id"] for r in results} <= {10, 20}
    sizes = {r["image_id"]: r["segmentation"]["size"] for r in results}
    expected = {1: [37, 81], 2: [64, 48], 3: [50, 50], 4: [120, 23]}
    assert all(sizes[i] == expected[i] for i in sizes)
    _, info = load_detector(tmp_path / "run")
    assert info.label_to_cat == {1: 10, 2: 20}  # labels follow sorted category ids


def test_sizes_default_to_the_data(tmp_path):
    _write_awkward_set(tmp_path)
    from densevision.data.coco import CocoDetection

    ds = CocoDetection(tmp_path / "ann.json", tmp_path / "img")
    assert image_sizes_from_data(ds) == (43, 73)  # medians 42.5 (sides 23,37,48,50) and 72.5 (50,64,81,120)


def test_drop_degenerate_boxes():
    target = {"boxes": torch.tensor([[0.0, 0, 5, 5], [3, 3, 3, 8]]), "labels": torch.tensor([1, 2]),
              "masks": torch.zeros(2, 8, 8, dtype=torch.uint8), "image_id": torch.tensor(4)}
    _, out = drop_degenerate(torch.zeros(3, 8, 8), target)
    assert out["labels"].tolist() == [1] and out["masks"].shape == (1, 8, 8) and int(out["image_id"]) == 4


def test_data_errors(tmp_path, data_dir):
    data = _write_awkward_set(tmp_path)
    empty = dict(data, annotations=[])
    (tmp_path / "empty.json").write_text(json.dumps(empty))
    with pytest.raises(DataError, match="empty.json: the training set has no annotations"):
        train_detector(_config({"train_json": tmp_path / "empty.json", "train_images": tmp_path / "img"}, iters=1),
                       tmp_path / "r", device="cpu", progress=False)
    layout = data_layout(data_dir)
    with pytest.raises(DataError, match="categories differ"):
        data = {"train_json": layout["train_json"], "train_images": layout["train_images"],
                "val_json": tmp_path / "ann.json", "val_images": tmp_path / "img"}
        train_detector(_config(data, iters=1), tmp_path / "r", device="cpu", progress=False)
    with pytest.raises(DataError, match="instances_train.json"):
        data_layout(tmp_path)
    with pytest.raises(DenseVisionError, match="unknown device 'tpu'"):
        train_detector(_config(layout), tmp_path / "r", device="tpu", progress=False)
    with pytest.raises(DenseVisionError, match="fp16 mixed precision needs a CUDA device"):
        _train(data_dir, tmp_path / "r", amp="fp16")
    with pytest.raises(DenseVisionError, match=r"r: nothing to resume \(no last.pt\)"):
        _train(data_dir, tmp_path / "r", resume=True)
    assert not (tmp_path / "r").exists()  # no directory left by a failed start
    shutil.rmtree(tmp_path / "img")


def test_resume_with_a_different_recipe_is_refused(data_dir, tmp_path):
    _train(data_dir, tmp_path / "a", iters=1)
    with pytest.raises(DenseVisionError, match="differs from the run's saved config in train.iters, train.lr; "):
        _train(data_dir, tmp_path / "a", iters=2, lr=0.5, resume=True)
    summary = _train(data_dir, tmp_path / "a", iters=1, log_every=5, workers=1, resume=True)  # same result
    assert summary["iteration"] == 1


def test_step_schedule_drops_the_lr_at_its_milestones(data_dir, tmp_path):
    _train(data_dir, tmp_path / "run", iters=4, warmup_iters=0, schedule="step", milestones=[2], log_every=1)
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    assert [round(h["lr"], 6) for h in history] == [0.01, 0.01, 0.001, 0.001]


def test_rerun_from_the_run_config_gives_identical_first_losses(data_dir, tmp_path):
    from densevision.cli import main

    assert main(["train", "--data", str(data_dir), "--out", str(tmp_path / "a"), "--backbone",
                 "timm:mobilenetv3_small_050", "--iters", "2", "--batch-size", "2", "--lr", "0.01",
                 "--warmup-iters", "1", "--log-every", "1", "--device", "cpu", "--no-progress", "--seed", "4",
                 *[f"--set=model.{k}={v}" for k, v in TINY_HEADS.items()]]) == 0
    assert main(["train", "--config", str(tmp_path / "a" / "config.yaml"), "--out", str(tmp_path / "b"),
                 "--device", "cpu", "--no-progress"]) == 0
    runs = [json.loads((tmp_path / r / "metrics.json").read_text())["train"] for r in "ab"]
    first = [[{k: v for k, v in entry.items() if "loss" in k or k == "lr"} for entry in run] for run in runs]
    assert first[0] == first[1] and len(first[0]) == 2 and "loss_mask" in first[0][0]
    assert (tmp_path / "a" / "config.yaml").read_text() == (tmp_path / "b" / "config.yaml").read_text()
