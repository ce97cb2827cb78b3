"""`densevision train --schedule step`: the detector's learning rate drops tenfold at the derived milestones
(67% and 89% of the iterations, detectron2's 1x fractions), read back from the optimizer state of one
checkpoint per iteration."""

from __future__ import annotations

import re

import pytest
import torch

from densevision.cli import main
from densevision.data.synthetic import generate

ITERS, LR = 9, 0.01


def test_step_schedule_drops_the_detector_lr_at_two_thirds_and_eight_ninths(tmp_path):
    generate(tmp_path / "data", train=2, val=0, size=64, seed=0, progress=False)
    run = tmp_path / "run"
    assert main([
        "train", "--train-json", str(tmp_path / "data/annotations/instances_train.json"),
        "--train-images", str(tmp_path / "data/train"), "--out", str(run),
        "--backbone", "timm:mobilenetv3_small_050", "--iters", str(ITERS), "--batch-size", "1", "--lr", str(LR),
        "--warmup-iters", "0", "--schedule", "step", "--checkpoint-every", "1", "--device", "cpu", "--no-progress",
    ]) == 0
    lr_after = {}  # completed iterations -> learning rate of the next iteration
    for path in run.glob("iter_*.pt"):
        state = torch.load(path, map_location="cpu", weights_only=False)
        lr_after[int(re.fullmatch(r"iter_(\d+)\.pt", path.name).group(1))] = state["optimizer"]["param_groups"][0]["lr"]
    assert sorted(lr_after) == list(range(1, ITERS + 1))
    # milestones round(0.67 * 9) = 6 and round(0.89 * 9) = 8
    expected = {i: LR * (1.0 if i < 6 else 0.1 if i < 8 else 0.01) for i in lr_after}
    assert lr_after == pytest.approx(expected, rel=1e-6)
