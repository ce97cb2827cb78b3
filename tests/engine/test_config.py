"""Typed configs: nested dataclasses from YAML and --set, generated flags, precedence, one-line errors."""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pytest
import yaml

from densevision.engine.config import (
    TrainConfig,
    add_config_flags,
    apply_overrides,
    config_differences,
    config_from_args,
    from_dict,
    load_config,
    plain_value,
    save_config,
    to_dict,
)
from densevision.errors import DenseVisionError


@dataclass
class Model:
    backbone: str = field(default="r50", metadata={"help": "the body"})
    kwargs: dict[str, Any] = field(default_factory=dict)
    min_size: int | list[int] | None = None
    heads: Literal["light", "big"] = "light"
    frozen: bool = False


@dataclass
class Recipe:
    model: Model = field(default_factory=Model)
    train: TrainConfig = field(default_factory=TrainConfig)


def parse(argv: list[str]) -> Recipe:
    parser = argparse.ArgumentParser(prog="train")
    add_config_flags(parser, Recipe, aliases={"train.workers": ["--num-workers"]})
    return config_from_args(parser.parse_args(argv), Recipe)


def test_nested_round_trip_through_yaml(tmp_path):
    config = apply_overrides(Recipe(), ["model.kwargs={width: 8}", "model.min_size=[64, 96]", "train.lr=1e-3"])
    path = save_config(config, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(path.read_text())["model"] == {"backbone": "r50", "kwargs": {"width": 8},
                                                         "min_size": [64, 96], "heads": "light", "frozen": False}
    assert load_config(path, Recipe) == config
    assert config.train.lr == 0.001 and isinstance(config.train.lr, float)


def test_precedence_defaults_file_flags_set(tmp_path):
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("train:\n  lr: 0.5\n  iters: 7\nmodel:\n  backbone: vit\n")
    config = parse(["--config", str(cfg), "--lr", "0.25", "--set", "train.iters=9", "--min-size", "64",
                    "--no-frozen", "--num-workers", "3"])
    assert (config.train.lr, config.train.iters, config.model.backbone) == (0.25, 9, "vit")
    assert config.model.min_size == 64 and config.model.frozen is False and config.train.workers == 3
    assert config.train.momentum == TrainConfig().momentum  # untouched defaults stay
    assert parse(["--min-size", "64", "96"]).model.min_size == [64, 96]
    assert parse([]) == Recipe()


@pytest.mark.parametrize(("overrides", "message"), [
    (["train.lrr=1"], "--set: unknown key train.lrr (did you mean train.lr?)"),
    (["train.lr=fast"], "--set: train.lr must be float, got 'fast'"),
    (["model.heads=huge"], "--set: model.heads must be one of light, big, got 'huge'"),
    (["train.iters=1.5"], "--set: train.iters must be int"),
    (["train.milestones=[1, x]"], "--set: train.milestones must be a list of int or null, got [1, 'x']"),
    (["model.frozen=1"], "--set: model.frozen must be bool"),
    (["lr"], "expected KEY=VALUE"),
])
def test_bad_override_is_one_error_naming_the_key(overrides, message):
    with pytest.raises(DenseVisionError) as info:
        apply_overrides(Recipe(), overrides)
    assert message in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize(("text", "message"), [
    ("train:\n  lrr: 0.1\n", "cfg.yaml: unknown key train.lrr (did you mean train.lr?)"),
    ("model: 3\n", "cfg.yaml: model must be"),
    ("- x\n", "cfg.yaml: the config must be a mapping"),
    ("model: [x\n", "cfg.yaml: not valid YAML"),
])
def test_bad_config_file_is_one_error(tmp_path, text, message):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    with pytest.raises(DenseVisionError, match="cfg.yaml") as info:
        load_config(path, Recipe)
    assert message in str(info.value)
    with pytest.raises(DenseVisionError, match="config file not found"):
        load_config(tmp_path / "nope.yaml", Recipe)


def test_flags_are_generated_from_the_fields_with_their_defaults_in_help(capsys):
    parser = argparse.ArgumentParser(prog="train")
    add_config_flags(parser, Recipe)
    with pytest.raises(SystemExit):
        parser.parse_args(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--backbone BACKBONE the body (config model.backbone; default 'r50')" in text
    assert "--heads {light,big}" in text and "--lr LR" in text and "--set KEY.PATH=VALUE" in text
    assert all(value is None for key, value in vars(parser.parse_args([])).items() if key.startswith("cfg:"))


def test_differences_ignore_keys_that_cannot_change_the_result():
    saved = to_dict(Recipe())
    changed = apply_overrides(Recipe(), ["train.log_every=1", "train.workers=4", "train.eval_batch_size=8"])
    assert config_differences(saved, changed) == []
    changed = apply_overrides(changed, ["train.lr=0.5", "model.kwargs={width: 4}"])
    assert config_differences(saved, changed) == ["model.kwargs.width", "train.lr"]


def test_a_key_newer_than_the_saved_config_differs_only_from_its_default():
    saved = to_dict(Recipe())
    del saved["train"]["lr"]  # a run saved before the key existed
    assert config_differences(saved, Recipe()) == []
    assert config_differences(saved, apply_overrides(Recipe(), ["train.lr=0.5"])) == ["train.lr"]


def test_step_milestones_default_to_detectron2_fractions():
    assert TrainConfig(iters=270).step_milestones() == [181, 240]
    assert TrainConfig(iters=270, milestones=[100]).step_milestones() == [100]


def test_from_dict_accepts_tuples_and_ints_for_floats():
    config = from_dict(Recipe, {"train": {"lr": 1, "milestones": (3, 5)}})
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float) and config.train.milestones == [3, 5]


def test_plain_values_and_no_torch_at_import():
    import numpy as np
    import torch

    plain = plain_value({"a": (1, 2), "b": np.float32(0.5), "c": torch.tensor(3), "d": {1: None}})
    assert plain == {"a": [1, 2], "b": 0.5, "c": 3, "d": {"1": None}}
    assert type(plain["b"]) is float and type(plain["c"]) is int
    tree = Path(sys.modules["densevision.engine.config"].__file__).read_text()
    assert "import torch" not in tree and "import numpy" not in tree
