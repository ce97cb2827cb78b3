import hashlib
import json
from dataclasses import asdict, replace

import pytest

from densevision.demo import (
    ASSETS,
    DETECTOR_FILE,
    QUICK_POSE_RECIPE,
    QUICK_RECIPE,
    QUICK_SEG_RECIPE,
    DemoRecipe,
    PoseDemoRecipe,
    SegDemoRecipe,
    _checkpoint_metrics,
    detector_config,
    pose_config,
    prepare_split,
    run_demo,
    run_pipeline,
)


def test_quick_demo_runs_every_step(tmp_path):
    out = run_demo(tmp_path, quick=True, device="cpu", detector_input=96, progress=False)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert set(metrics) == {"coarse", "refined", "semantic", "pose"}
    assert set(metrics["pose"]) == {"gt_boxes", "detector_boxes"}
    assert 0.0 <= metrics["pose"]["gt_boxes"]["AP"] <= 100.0
    assert (tmp_path / "keypoints_gt_boxes.json").is_file() and (tmp_path / "keypoints.json").is_file()
    for stage in ("coarse", "refined"):
        assert set(metrics[stage]) == {"bbox", "segm", "boundary"}
        assert all(0.0 <= metrics[stage][t]["AP"] <= 100.0 for t in metrics[stage])
    semantic = metrics["semantic"]
    assert set(semantic) == {"mIoU", "aAcc", "mAcc", "per_class", "boundary_mIoU", "detector_baseline_mIoU",
                             "detector_baseline_boundary_mIoU"}
    assert set(semantic["per_class"]["background"]) == {"IoU", "Acc", "BoundaryIoU"}
    assert list(semantic["per_class"]) == ["background", "triangle", "square", "star", "ellipse", "ring"]
    assert 0.0 <= semantic["mIoU"] <= 100.0 and 0.0 <= semantic["detector_baseline_mIoU"] <= 100.0
    assert len(list((tmp_path / "semantic").glob("*.png"))) == QUICK_RECIPE.val_images
    assert out["semantic_figure"].stat().st_size > 5_000
    report = out["report"].read_text()
    assert report.startswith("# densevision demo")
    assert f"detector input 96 px short side, trained at {QUICK_RECIPE.detector_input}" in report
    assert (tmp_path / "figure.png").stat().st_size > 10_000
    for name in ("demo_detector", "demo_refiner", "demo_segmenter", "demo_pose"):
        weights = tmp_path / "weights" / f"{name}.pt"
        card = json.loads((tmp_path / "weights" / f"{name}.json").read_text())
        assert card["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
        assert card["recipe"]["seed"] == QUICK_RECIPE.seed and card["iterations"] == 3
    card = json.loads((tmp_path / "weights" / "demo_segmenter.json").read_text())
    assert card["segmenter_recipe"] == asdict(QUICK_SEG_RECIPE) | {"ratio_range": list(QUICK_SEG_RECIPE.ratio_range)}
    assert card["backbone_init"]["file"] == "demo_detector.pt"
    assert card["metrics"]["val"]["mIoU"] == pytest.approx(semantic["mIoU"])
    card = json.loads((tmp_path / "weights" / "demo_pose.json").read_text())
    assert card["pose_recipe"] == asdict(QUICK_POSE_RECIPE) and card["backbone_init"]["file"] == "demo_detector.pt"
    assert card["metrics"]["val"]["AP"] == pytest.approx(metrics["pose"]["gt_boxes"]["AP"])
    refined = json.loads((tmp_path / "refined.json").read_text())
    coarse = json.loads((tmp_path / "coarse.json").read_text())
    assert [(r["image_id"], r["category_id"], r["score"]) for r in refined] == \
        [(r["image_id"], r["category_id"], r["score"]) for r in coarse]

    # Without segmenter weights the semantic stage is skipped with a note.
    weights = {k: tmp_path / "weights" / f"demo_{k}.pt" for k in ("detector", "refiner")}
    again = run_pipeline(tmp_path / "no_seg", weights, recipe=replace(QUICK_RECIPE, detector_test_input=96),
                         device="cpu", progress=False)
    assert "semantic" not in again["metrics"] and again["semantic_figure"] is None
    assert "Skipped: no segmenter weights" in again["report"].read_text()
    assert "pose" not in again["metrics"] and "Skipped: no pose weights" in again["report"].read_text()


def test_prepare_split_reuses_identical_data(tmp_path):
    recipe = replace(QUICK_RECIPE, image_size=96)
    ann, _ = prepare_split(tmp_path, "val", 2, recipe, progress=False)
    stamp = ann.stat().st_mtime_ns
    assert prepare_split(tmp_path, "val", 2, recipe, progress=False)[0].stat().st_mtime_ns == stamp
    prepare_split(tmp_path, "val", 3, recipe, progress=False)
    assert len(json.loads(ann.read_text())["images"]) == 3


def test_pose_config_trains_without_rotation():
    """The shapes' keypoints are named by their screen orientation: the demo pose network never sees rotated crops,
    while the other augmentations keep `pose train`'s defaults."""
    data = {"train_json": "a.json", "train_images": "a", "val_json": "b.json", "val_images": "b"}
    config = pose_config(DemoRecipe(), PoseDemoRecipe(), data, ASSETS / DETECTOR_FILE)
    assert config.data.rotation == PoseDemoRecipe().rotation == 0.0
    assert config.data.flip == 0.5 and config.data.scale == 0.35
    assert config.model.backbone_init == str(ASSETS / DETECTOR_FILE) and config.train.iters == PoseDemoRecipe().iters


@pytest.mark.slow
def test_recorded_recipe_reproduces_first_losses(tmp_path):
    """The shipped detector's card records its first losses; the recipe with its seed gives them again."""
    from densevision.detection.train import train_detector

    card = json.loads((ASSETS / DETECTOR_FILE).with_suffix(".json").read_text())
    recipe = DemoRecipe(**card["recipe"])
    ann, images = prepare_split(tmp_path / "data", "train", recipe.train_images, recipe, progress=False)
    steps = 2
    config = detector_config(recipe, {"train_json": ann, "train_images": images, "val_json": None,
                                      "val_images": None})
    config.train.iters, config.train.eval_every = steps, 0
    summary = train_detector(config, tmp_path / "run", device="cpu", progress=False)
    assert summary["iteration"] == steps
    history = json.loads((tmp_path / "run" / "metrics.json").read_text())["train"]
    # Iteration k's loss depends on the learning rates of the steps before it. A short schedule shares the
    # recorded one's first rate (the warm-up start), not the later ones (the cosine spans all iterations).
    assert history[0]["lr"] == pytest.approx(card["first_losses"][0]["lr"], rel=1e-6)
    for got, want in zip(history, card["first_losses"][:steps], strict=True):
        assert got["total_loss"] == pytest.approx(want["total_loss"], rel=1e-3)
        assert got["loss_mask"] == pytest.approx(want["loss_mask"], rel=1e-3)


@pytest.mark.parametrize(("name", "recipes"), [
    ("demo_detector", {}), ("demo_refiner", {}), ("demo_segmenter", {"segmenter_recipe": SegDemoRecipe()}),
    ("demo_pose", {"pose_recipe": PoseDemoRecipe()}),
])
def test_shipped_cards_record_the_current_recipes(name, recipes):
    """`demo --train` remakes what ships: each card records the recipes the code holds now (a card written before
    an inference-only field existed lacks it) and the sha256 of its weights file."""
    card = json.loads((ASSETS / f"{name}.json").read_text())
    for key, recipe in {"recipe": DemoRecipe(), **recipes}.items():
        current = json.loads(json.dumps(asdict(recipe)))
        assert set(current) - set(card[key]) <= {"detector_test_input"}, key
        assert card[key] == {k: v for k, v in current.items() if k in card[key]}, key
    assert hashlib.sha256((ASSETS / card["weights"]).read_bytes()).hexdigest() == card["sha256"]


def test_card_metrics_are_the_shipped_checkpoints(tmp_path):
    """A card scores the checkpoint that ships: the best evaluation's metrics when ``best.pt`` ships, not the last."""
    history = {"eval": [{"iteration": 200, "AP": 71.0, "AR": 73.0}, {"iteration": 400, "AP": 70.0, "AR": 74.0}]}
    summary = {"metrics": history["eval"][-1], "best": {"metric": "AP", "value": 71.0, "iteration": 200}}
    assert _checkpoint_metrics(summary, tmp_path / "best.pt", history) == {"AP": 71.0, "AR": 73.0}
    assert _checkpoint_metrics(summary, tmp_path / "last.pt", history, lambda k: k == "AP") == {"AP": 70.0}


@pytest.mark.parametrize("name", ["demo_segmenter", "demo_pose"])
def test_shipped_cards_score_their_best_checkpoint(name):
    """The shipped cards' tuning metrics are those of the evaluation whose checkpoint (``best.pt``) ships."""
    card = json.loads((ASSETS / f"{name}.json").read_text())
    assert card["checkpoint"] == "best.pt"
    key = next(iter(card["metrics"]["tune"]))
    best = max(card["learning_curve"], key=lambda entry: entry[key])
    assert card["metrics"]["tune"] == {k: v for k, v in best.items() if k in card["metrics"]["tune"]}
