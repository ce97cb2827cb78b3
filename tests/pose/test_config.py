"""The pose recipe: torch-free to import, the official recipe's defaults, flags generated from it."""

from __future__ import annotations

import subprocess
import sys

from densevision.engine.config import leaf_keys
from densevision.pose.config import PoseTrainConfig


def test_config_and_cli_modules_do_not_import_torch() -> None:
    code = ("import sys, densevision.pose.config, densevision.cli.pose; "
            "print(sorted(m for m in ('torch', 'numpy', 'cv2', 'pycocotools') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_official_recipe_defaults() -> None:
    config = PoseTrainConfig()
    assert (config.train.lr, config.train.weight_decay, config.train.schedule) == (1e-3, 0.0, "step")
    assert config.model.input_size == [256, 192] and config.model.sigma == 2.0
    assert (config.data.rotation, config.data.scale, config.data.flip, config.data.half_body) == (45.0, 0.35, 0.5, 0.3)
    assert {"model.model", "model.backbone", "data.kpt_sigmas", "train.iters"} <= set(leaf_keys(PoseTrainConfig))
