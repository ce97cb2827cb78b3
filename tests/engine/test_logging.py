"""Run logging: windowed averages, history as checkpoint state, TensorBoard events, loss-curve PNG."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from densevision.engine import TrainingLogger, plot_loss_curve


def test_windows_average_scalars_and_survive_a_restart(tmp_path):
    log = TrainingLogger(tmp_path, max_iters=7, log_every=3, progress=False, tensorboard=False)
    log.start(0)
    for i in range(4):
        log.record(i, {"loss": float(i), "lr": 0.5})
    assert log.history == [{"iteration": 3, "loss": 1.0, "lr": 0.5}]
    state = log.state_dict()
    log.record(4, {"loss": 4.0, "lr": 0.5})
    log.record(5, {"loss": 5.0, "lr": 0.5})
    restarted = TrainingLogger(tmp_path, max_iters=7, log_every=3, progress=False, tensorboard=False)
    restarted.load_state_dict(state)
    restarted.record(4, {"loss": 4.0, "lr": 0.5})
    restarted.record(5, {"loss": 5.0, "lr": 0.5})
    assert restarted.history == log.history == [{"iteration": 3, "loss": 1.0, "lr": 0.5},
                                                {"iteration": 6, "loss": 4.0, "lr": 0.5}]
    restarted.record(6, {"loss": 6.0, "lr": 0.5})  # the last iteration always closes a window
    assert restarted.history[-1] == {"iteration": 7, "loss": 6.0, "lr": 0.5}


def test_summary_files_and_tensorboard(tmp_path, capsys):
    log = TrainingLogger(tmp_path, max_iters=4, log_every=2, progress=True, tensorboard=True)
    log.start(0)
    for i in range(4):
        log.record(i, {"loss_a": 1.0 / (i + 1), "total_loss": 2.0 / (i + 1), "lr": 0.5})
    log.record_metrics(3, {"ap": 0.25, "note": "text is not plotted"})
    log.write_summary()
    log.close()
    assert "eval: ap=0.25" in capsys.readouterr().err
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert [e["iteration"] for e in summary["train"]] == [2, 4]
    assert summary["eval"] == [{"iteration": 4, "ap": 0.25}]
    with Image.open(tmp_path / "loss_curve.png") as png:
        assert png.size[0] > png.size[1] > 100
    events = list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))
    assert events

    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "tensorboard"))
    acc.Reload()
    assert {"train/loss_a", "train/total_loss", "train/lr", "eval/ap"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("train/total_loss")] == [2, 4]


def test_disabled_logger_writes_nothing(tmp_path):
    log = TrainingLogger(tmp_path / "run", max_iters=2, enabled=False)
    log.start(0)
    log.record(0, {"loss": 1.0})
    log.record(1, {"loss": 1.0})
    log.write_summary()
    log.close()
    assert not (tmp_path / "run").exists()


def test_plot_loss_curve_with_non_positive_values(tmp_path):
    plot_loss_curve([{"iteration": 1, "loss": -1.0}, {"iteration": 2, "loss": 0.5}], tmp_path / "c.png")
    assert (tmp_path / "c.png").stat().st_size > 1000


@pytest.mark.parametrize("start", [0, 2])
def test_progress_bar_starts_at_the_resumed_iteration(tmp_path, capsys, start):
    log = TrainingLogger(tmp_path, max_iters=4, progress=True, tensorboard=False)
    log.start(start)
    for i in range(start, 4):
        log.record(i, {"loss": 1.0})
    log.close()
    assert "4/4" in capsys.readouterr().err
