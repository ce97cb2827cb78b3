"""``detect train --detector cascade_mask_rcnn`` -> ``detect predict`` -> ``bpr`` (patches from the checkpoint,
refine its results) -> ``eval``: the cascade checkpoint goes through the same commands as Mask R-CNN's."""

from __future__ import annotations

import json

import pytest
import torch

from densevision.cli import main
from densevision.data.synthetic import generate
from densevision.detection.cascade import CascadeRoIHeads
from densevision.detection.predict import load_detector

TINY = [f"--set=model.{key}={value}" for key, value in {
    "fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16,
    "rpn_pre_nms_top_n_train": 50, "rpn_post_nms_top_n_train": 20, "rpn_pre_nms_top_n_test": 50,
    "rpn_post_nms_top_n_test": 20, "box_detections_per_img": 8, "box_score_thresh": 0.0,
}.items()]
REFINER = ["--model-arg", "width=4", "--model-arg", "stage1_blocks=1", "--model-arg", "stage1_planes=8",
           "--model-arg", "num_modules=[1, 1, 1]", "--model-arg", "num_blocks=[1, 1, 1]", "--model-arg",
           "stem_width=8"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("cascade_cli")
    generate(root / "data", train=3, val=2, size=64, seed=1, progress=False)
    code = main(["detect", "train", "--detector", "cascade_mask_rcnn", "--cascade-mask-heads", "final",
                 "--data", str(root / "data"), "--backbone", "timm:mobilenetv3_small_050", "--out", str(root / "run"),
                 "--iters", "2", "--batch-size", "2", "--lr", "0.01", "--warmup-iters", "1", "--device", "cpu",
                 "--no-tensorboard", "--no-progress", *TINY])
    assert code == 0
    return root


def test_checkpoint_rebuilds_the_cascade(trained):
    state = torch.load(trained / "run" / "last.pt", weights_only=True)
    spec = state["model_spec"]
    assert spec["builder"] == "mask_rcnn" and spec["config"]["detector"] == "cascade_mask_rcnn"
    assert spec["config"]["cascade_mask_heads"] == "final"
    model, info = load_detector(trained / "run")
    assert isinstance(model.roi_heads, CascadeRoIHeads) and len(model.roi_heads.mask_heads) == 1
    assert info.class_names == ["triangle", "square", "star", "ellipse", "ring"]
    assert json.loads((trained / "run" / "metrics.json").read_text())


def test_predict_refine_eval(trained, capsys):
    data, out = trained / "data", trained / "out"
    val_json = data / "annotations" / "instances_val.json"
    assert main(["detect", "predict", "--checkpoint", str(trained / "run"), "--images", str(data / "val"),
                 "--ann", str(val_json), "--out", str(out / "results.json"), "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results and all(len(r["bbox"]) == 4 and "segmentation" in r for r in results)
    # The cascade checkpoint feeds `bpr patches` (an untrained detector matches no instance: no patches) ...
    assert main(["bpr", "patches", "--checkpoint", str(trained / "run"), "--data", str(data), "--split", "train",
                 "--out", str(out / "det_patches"), "--patch-size", "16", "--device", "cpu"]) == 0
    assert "matched instances (" in capsys.readouterr().out
    # ... so the refiner trains on patches of the ground truth written as results.
    train = json.loads((data / "annotations" / "instances_train.json").read_text())
    (out / "train_gt.json").write_text(json.dumps([
        {"image_id": a["image_id"], "category_id": a["category_id"], "score": 1.0, "bbox": a["bbox"],
         "segmentation": a["segmentation"]} for a in train["annotations"]]))
    assert main(["bpr", "patches", "--results", str(out / "train_gt.json"), "--data", str(data), "--out",
                 str(out / "patches"), "--patch-size", "16"]) == 0
    assert main(["bpr", "train", "--patches", str(out / "patches"), "--out", str(out / "bpr"), *REFINER,
                 "--input-size", "32", "--iters", "2", "--batch", "4", "--workers", "0", "--no-tensorboard",
                 "--device", "cpu", "--no-progress"]) == 0
    assert main(["bpr", "refine", "--ann", str(val_json), "--images", str(data / "val"), "--results",
                 str(out / "results.json"), "--checkpoint", str(out / "bpr"), "--out", str(out / "refined.json"),
                 "--device", "cpu"]) == 0
    refined = json.loads((out / "refined.json").read_text())
    assert [(r["image_id"], r["category_id"], r["score"]) for r in refined] == \
        [(r["image_id"], r["category_id"], r["score"]) for r in results]
    capsys.readouterr()
    assert main(["eval", "--gt", str(val_json), "--results", str(out / "refined.json"), "--out",
                 str(out / "metrics")]) == 0
    assert "segm" in capsys.readouterr().out
