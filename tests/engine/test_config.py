"""YAML defaults for flags (``--config``), for a plain parser and for a subcommand, and the saved config."""

from __future__ import annotations

import argparse

import pytest
import yaml

from densevision.engine import (
    add_config_argument,
    load_config,
    parse_with_config,
    resolved_config,
    save_config,
)
from densevision.errors import DenseVisionError


def train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="train")
    parser.add_argument("--data", required=True)
    parser.add_argument("--lr", type=float, default=0.02)
    parser.add_argument("--schedule", choices=["step", "cosine"], default="step")
    parser.add_argument("--milestones", type=int, nargs="*", default=[])
    parser.add_argument("--amp", action="store_true")
    parser.add_argument("--max-iters", type=int, default=100)
    return parser


def write(tmp_path, text: str):
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return str(path)


def test_yaml_sets_defaults_and_the_command_line_wins(tmp_path):
    cfg = write(tmp_path, "data: coco\nlr: 1e-3\nschedule: cosine\nmilestones: [10, 20]\namp: true\n"
                          "max-iters: 7\n")
    args = parse_with_config(train_parser(), ["--config", cfg, "--lr", "0.5"])
    assert (args.data, args.lr, args.schedule, args.milestones, args.amp, args.max_iters) == (
        "coco", 0.5, "cosine", [10, 20], True, 7)
    args = parse_with_config(train_parser(), ["--max-iters", "3", "--config", cfg])
    assert args.lr == 0.001 and args.max_iters == 3  # "1e-3" (a YAML string) converted by the flag's type


def test_parser_defaults_are_restored_after_a_parse(tmp_path):
    parser = add_config_argument(train_parser())
    parser.parse_args(["--config", write(tmp_path, "data: x\nlr: 0.1\n")])
    assert parser.parse_args(["--data", "y"]).lr == 0.02
    with pytest.raises(SystemExit):  # --data is required again without the file
        parser.parse_args([])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("data: x\nlrr: 0.1\nfoo: 1\n", "unknown config keys: lrr (did you mean lr?), foo"),
        ("data: x\nschedule: poly\n", "schedule: 'poly' is not one of step, cosine"),
        ("data: x\nlr: fast\n", "lr: invalid value 'fast'"),
        ("data: x\namp: 1\n", "amp is an on/off flag"),
        ("data: x\nmilestones: 5\n", "milestones takes a list of values"),
        ("- data\n", "a config file must map flags to values"),
        ("data: [x\n", "not valid YAML"),
    ],
)
def test_bad_config_is_one_clear_error(tmp_path, capsys, text, message):
    cfg = write(tmp_path, text)
    with pytest.raises(SystemExit) as info:
        parse_with_config(train_parser(), ["--config", cfg])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"{cfg}: " in err and message in err
    with pytest.raises(DenseVisionError, match="cfg.yaml"):
        load_config(cfg, train_parser())


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(DenseVisionError, match="nope.yaml: config file not found"):
        load_config(tmp_path / "nope.yaml", train_parser())
    assert load_config(write(tmp_path, ""), train_parser()) == {}


def test_subcommand_parser_honours_config(tmp_path):
    top = argparse.ArgumentParser(prog="densevision")
    top.add_argument("--verbose", action="store_true")
    sub = top.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train")
    train.add_argument("--lr", type=float, default=0.02)
    add_config_argument(train)
    train.set_defaults(func=lambda args: 0)
    args = top.parse_args(["--verbose", "train", "--config", write(tmp_path, "lr: 0.3\n")])
    assert args.lr == 0.3 and args.command == "train" and args.verbose


def test_resolved_config_round_trips_as_config_file(tmp_path):
    parser = train_parser()
    args = parse_with_config(parser, ["--data", str(tmp_path), "--milestones", "4", "8"])
    args.func = print
    resolved = resolved_config(args, parser)
    assert resolved == {"data": str(tmp_path), "lr": 0.02, "schedule": "step", "milestones": [4, 8],
                        "amp": False, "max_iters": 100}
    path = save_config(resolved, tmp_path / "run" / "config.yaml")
    assert yaml.safe_load(path.read_text()) == resolved
    again = parse_with_config(train_parser(), ["--config", str(path)])
    assert resolved_config(again, parser) == resolved


def test_resolved_config_makes_values_plain():
    import numpy as np
    import torch

    plain = resolved_config({"a": (1, 2), "b": np.float32(0.5), "c": torch.tensor(3), "d": {1: None},
                             "config": "x.yaml", "func": print})
    assert plain == {"a": [1, 2], "b": 0.5, "c": 3, "d": {"1": None}}
    assert type(plain["b"]) is float and type(plain["c"]) is int
