"""Synthetic shapes with keypoints -> ``pose train`` (tiny pose HRNet, a few iterations) -> ``pose predict`` with
ground-truth boxes and with a boxes file -> ``eval --iou-types keypoints``, all through the command line; the same
on a hand-made 17-keypoint COCO person file (COCO's sigmas, flip pairs and half-body crops)."""

from __future__ import annotations

import json

import pytest

from densevision.cli import main
from densevision.data.synthetic import generate
from densevision.pose.heads import ViTPoseSimpleHead
from densevision.pose.model import load_pose_model
from tests.pose.conftest import write_person_fixture

TINY = "{width: 4, stage1_blocks: 1, stage1_planes: 8, num_modules: [1, 1, 1], num_blocks: [1, 1, 1]}"
TINY_VIT = "{embed_dim: 32, depth: 1, num_heads: 2, img_size: 64}"


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("pose")
    generate(root / "synth", train=3, val=2, size=96, seed=0, progress=False)
    args = ["pose", "train", "--data", str(root / "synth"), "--model", "pose_hrnet_w32", "--overrides", TINY,
            "--input-size", "64", "48", "--iters", "3", "--batch-size", "4", "--eval-batch-size", "16",
            "--checkpoint-every", "3", "--log-every", "1", "--no-tensorboard", "--no-progress", "--device", "cpu",
            "--out", str(root / "run")]
    assert main(args) == 0
    return root


def test_train_writes_a_pose_checkpoint_with_validation_ap(run) -> None:
    metrics = json.loads((run / "run" / "eval" / "coco_metrics.json").read_text())
    assert 0 <= metrics["keypoints"]["AP"] <= 100
    assert (run / "run" / "last.pt").is_file() and (run / "run" / "config.yaml").is_file()


def test_train_a_plain_vit_with_the_vitpose_head(run) -> None:
    args = ["pose", "train", "--data", str(run / "synth"), "--backbone", "vit_tiny_patch16_224", "--head", "vitpose",
            "--overrides", TINY_VIT, "--input-size", "64", "48", "--iters", "2", "--batch-size", "4",
            "--eval-batch-size", "16", "--no-tensorboard", "--no-progress", "--device", "cpu",
            "--out", str(run / "vit")]
    assert main(args) == 0
    model, _ = load_pose_model(run / "vit")
    assert isinstance(model.network.head, ViTPoseSimpleHead) and model.heatmap_size == (16, 12)


def test_predict_with_gt_boxes_then_eval(run, capsys) -> None:
    val_json = run / "synth" / "annotations" / "instances_val.json"
    out = run / "res.json"
    assert main(["pose", "predict", "--checkpoint", str(run / "run"), "--images", str(run / "synth" / "val"),
                 "--ann", str(val_json), "--gt-boxes", "--out", str(out), "--device", "cpu"]) == 0
    results = json.loads(out.read_text())
    gt = json.loads(val_json.read_text())
    assert len(results) == len(gt["annotations"])
    sizes = {c["id"]: len(c["keypoints"]) for c in gt["categories"]}
    assert all(len(r["keypoints"]) == 3 * sizes[r["category_id"]] for r in results)
    assert main(["eval", "--gt", str(val_json), "--results", str(out), "--iou-types", "keypoints",
                 "--out", str(run / "m.json")]) == 0
    assert 0 <= json.loads((run / "m.json").read_text())["keypoints"]["AP"] <= 100

    boxes = run / "boxes.json"
    boxes.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                  "score": 1.0} for a in gt["annotations"]]))
    out2 = run / "res2.json"
    assert main(["pose", "predict", "--checkpoint", str(run / "run"), "--images", str(run / "synth" / "val"),
                 "--ann", str(val_json), "--boxes", str(boxes), "--out", str(out2), "--device", "cpu"]) == 0
    assert [r["keypoints"] for r in json.loads(out2.read_text())] == [r["keypoints"] for r in results]


def test_predict_refuses_to_overwrite_an_input(run, capsys) -> None:
    val_json = run / "synth" / "annotations" / "instances_val.json"
    assert main(["pose", "predict", "--checkpoint", str(run / "run"), "--images", str(run / "synth" / "val"),
                 "--ann", str(val_json), "--gt-boxes", "--out", str(val_json)]) == 2
    assert "--out" in capsys.readouterr().err


def test_oks_nms_drops_duplicate_boxes_unless_disabled(run) -> None:
    val_json = run / "synth" / "annotations" / "instances_val.json"
    gt = json.loads(val_json.read_text())
    boxes = run / "twice.json"
    boxes.write_text(json.dumps([{"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                                  "score": score} for a in gt["annotations"] for score in (1.0, 0.5)]))
    counts = []
    for flags in ([], ["--oks-nms", "0"]):
        out = run / f"nms{len(flags)}.json"
        assert main(["pose", "predict", "--checkpoint", str(run / "run"), "--images", str(run / "synth" / "val"),
                     "--ann", str(val_json), "--boxes", str(boxes), "--out", str(out), "--device", "cpu",
                     *flags]) == 0
        counts.append(len(json.loads(out.read_text())))
    assert counts == [len(gt["annotations"]), 2 * len(gt["annotations"])]


def test_person_file_train_predict_eval(tmp_path) -> None:
    ann, images = write_person_fixture(tmp_path)
    assert main(["pose", "train", "--train-json", str(ann), "--train-images", str(images), "--val-json", str(ann),
                 "--val-images", str(images), "--model", "pose_hrnet_w32", "--overrides", TINY, "--input-size", "64",
                 "48", "--iters", "2", "--batch-size", "2", "--half-body", "1.0", "--no-tensorboard",
                 "--no-progress", "--device", "cpu", "--out", str(tmp_path / "run")]) == 0
    model, meta = load_pose_model(tmp_path / "run")
    assert meta["categories"][0]["kpt_sigmas"][0] == pytest.approx(0.026) and model.num_joints == 17
    out = tmp_path / "keypoints.json"
    assert main(["pose", "predict", "--checkpoint", str(tmp_path / "run"), "--images", str(images), "--ann", str(ann),
                 "--gt-boxes", "--out", str(out), "--device", "cpu"]) == 0
    assert [len(r["keypoints"]) for r in json.loads(out.read_text())] == [51, 51]
    assert main(["eval", "--gt", str(ann), "--results", str(out), "--iou-types", "keypoints",
                 "--out", str(tmp_path / "m.json")]) == 0
    assert 0 <= json.loads((tmp_path / "m.json").read_text())["keypoints"]["AP"] <= 100
