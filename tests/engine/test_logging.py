"""Run logging: windowed averages, history as checkpoint state, log.txt, TensorBoard events, loss-curve PNG, and
the optional packages (tensorboard, matplotlib) missing."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from densevision.engine import Trainer, TrainingLogger, build_optimizer, plot_loss_curve
from densevision.engine.logging import LOG_FILE, MARKER_POINTS, loss_curve_figure
from densevision.errors import DenseVisionError

STAMP = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "


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


def _log_lines(run_dir) -> list[str]:
    text = (run_dir / LOG_FILE).read_text()
    assert "\r" not in text
    lines = text.splitlines()
    assert all(re.match(STAMP, line) for line in lines), lines
    return [line[20:] for line in lines]


def test_log_txt_holds_windows_evaluations_checkpoints_and_the_end_across_a_resume(tmp_path, tiny, capsys):
    tiny.run_tiny(tmp_path, max_iters=6, checkpoint_every=3, eval_every=6)
    lines = _log_lines(tmp_path)
    assert lines[0] == "training 6 iterations"
    assert re.fullmatch(r"\[iter 3/6\] loss_cls=\S+ loss_reg=\S+ total_loss=\S+ lr=\S+ .*eta=0:00:\d\d", lines[1])
    assert lines[2] == "[iter 3/6] checkpoint: iter_0000003.pt, last.pt"
    assert re.fullmatch(r"\[iter 6/6\] eval: acc=\S+ num_eval=7", lines[3])
    assert lines[4].startswith("[iter 6/6] loss_cls=")
    assert lines[5] == "[iter 6/6] checkpoint: iter_0000006.pt, last.pt, best.pt"
    assert re.fullmatch(r"finished 6/6 iterations in 0:00:\d\d; last window: loss_cls=\S+ loss_reg=\S+ "
                        r"total_loss=\S+; last eval: acc=\S+ num_eval=7; best acc=\S+ at iteration 6", lines[6])
    assert len(lines) == 7
    assert capsys.readouterr().err.splitlines() == lines  # no progress bar: every line is printed too

    tiny.run_tiny(tmp_path, max_iters=9, checkpoint_every=3, eval_every=6, resume=True)
    lines = _log_lines(tmp_path)
    assert lines[7] == "training 9 iterations, resumed after iteration 6"
    assert lines[-1].startswith("finished 9/9 iterations")


def test_with_a_progress_bar_routine_lines_go_to_the_file_only(tmp_path, capsys):
    log = TrainingLogger(tmp_path, max_iters=4, log_every=2, progress=True, tensorboard=False)
    log.start(0)
    for i in range(4):
        log.record(i, {"total_loss": 1.0})
    log.record_metrics(3, {"ap": 0.5})
    log.log_end(metrics={"ap": 0.5}, best=None)
    log.close()
    err = capsys.readouterr().err
    assert "[iter 4/4] eval: ap=0.5" in err and "finished 4/4 iterations" in err
    assert "[iter 2/4]" not in err and "total_loss=1 eta" not in err
    assert [line for line in _log_lines(tmp_path) if "total_loss=1 " in line] == [
        "[iter 2/4] total_loss=1 eta=0:00:00", "[iter 4/4] total_loss=1 eta=0:00:00"]


def test_the_error_that_stops_a_run_is_logged(tmp_path, capsys):
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    trainer = Trainer(
        model, build_optimizer(model, lr=0.1), lambda i: torch.full((2, 3), float("nan") if i == 2 else 1.0),
        run_dir=tmp_path, max_iters=5, log_every=1, loss_fn=lambda m, x: m(x).pow(2).mean(), progress=False,
        tensorboard=False,
    )
    with pytest.raises(DenseVisionError, match="non-finite loss at iteration 2"):
        trainer.train()
    lines = _log_lines(tmp_path)
    assert lines[-2].startswith("stopped: non-finite loss at iteration 2 (loss=nan")
    assert lines[-1].startswith("stopped after 2/5 iterations in ")
    assert "stopped: non-finite" not in capsys.readouterr().err  # the command reports the error itself


def test_without_tensorboard_the_events_are_skipped_with_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    log = TrainingLogger(tmp_path, max_iters=2, log_every=1, progress=False, tensorboard=True)
    log.start(0)
    log.record(0, {"loss": 1.0})
    log.record(1, {"loss": 0.5})
    log.write_summary()
    log.close()
    skipped = [line for line in _log_lines(tmp_path) if "TensorBoard" in line]
    assert skipped == ['TensorBoard events skipped: TensorBoard logging needs tensorboard, which is not installed: '
                       'pip install "densevision[tensorboard]"']
    assert skipped[0] in capsys.readouterr().err
    assert not (tmp_path / "tensorboard").exists()
    assert json.loads((tmp_path / "metrics.json").read_text())["train"][-1]["loss"] == 0.5


def test_without_matplotlib_the_loss_curve_is_skipped_with_one_line(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    log = TrainingLogger(tmp_path, max_iters=2, log_every=1, progress=False, tensorboard=False)
    log.start(0)
    for i in range(2):
        log.record(i, {"loss": 1.0})
        log.write_summary()
    log.close()
    assert [line for line in _log_lines(tmp_path) if "skipped" in line] == [
        'loss_curve.png skipped: the loss curve needs matplotlib, which is not installed: '
        'pip install "densevision[plots]"']
    assert (tmp_path / "metrics.json").is_file() and not (tmp_path / "loss_curve.png").exists()


def _drawn_pixels(fig, colour) -> int:
    """Pixels of the rendered figure (without its legends) within a small distance of an RGBA ``colour``."""
    for ax in fig.axes:
        if ax.get_legend() is not None:
            ax.get_legend().remove()
    fig.canvas.draw()
    pixels = np.asarray(fig.canvas.buffer_rgba())[..., :3].astype(int)
    return int((np.abs(pixels - np.array(colour[:3]) * 255).max(-1) <= 8).sum())


def test_a_three_iteration_run_plots_visible_points(tmp_path, tiny):
    _, trainer, _ = tiny.run_tiny(tmp_path, max_iters=3, checkpoint_every=3, eval_every=3)
    history = trainer.logger.history
    assert len(history) == 1  # one window: a line through one point draws nothing without a marker
    fig = loss_curve_figure(history, trainer.logger.eval_history)
    loss_ax, eval_ax = fig.axes
    assert [line.get_label() for line in loss_ax.get_lines()] == ["total_loss", "loss_cls", "loss_reg"]
    lines = [*loss_ax.get_lines(), *eval_ax.get_lines()]
    assert all(line.get_marker() == "o" and len(line.get_xdata()) == 1 for line in lines)
    for line in lines:
        assert _drawn_pixels(fig, line.get_color()) >= 4, line.get_label()
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000


def test_the_total_of_a_single_loss_is_not_drawn_over_it():
    fig = loss_curve_figure([{"iteration": 2, "total_loss": 1.0, "loss_seg": 1.0}])
    assert [line.get_label() for line in fig.axes[0].get_lines()] == ["loss_seg"]


def test_every_series_has_its_own_colour_and_long_series_no_markers():
    history = [{"iteration": i, **{f"loss_{k:02d}": 1.0 + k + 1 / i for k in range(15)}}
               for i in range(1, MARKER_POINTS + 2)]
    evaluation = [{"iteration": 5, **{f"segm/AP{k}": float(k) for k in range(18)}}]
    loss_ax, eval_ax = loss_curve_figure(history, evaluation).axes
    for ax, n in ((loss_ax, 15), (eval_ax, 18)):
        colours = {tuple(np.round(line.get_color(), 3)) for line in ax.get_lines()}
        assert len(ax.get_lines()) == len(colours) == n
        assert len(ax.get_legend().get_texts()) == n
    assert {line.get_marker() for line in loss_ax.get_lines()} == {"None"}
