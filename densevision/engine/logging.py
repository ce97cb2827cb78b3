"""What a training run reports: a tqdm progress bar with losses and ETA, a plain-text ``run_dir/log.txt``,
TensorBoard scalars (``run_dir/tensorboard``), ``run_dir/metrics.json`` and ``run_dir/loss_curve.png``.

Per-iteration scalars are averaged over windows of ``log_every`` iterations; the windowed history is part
of the checkpoint (:meth:`TrainingLogger.state_dict`), so a resumed run reports the same curve as an
uninterrupted one, and TensorBoard events after the resumed iteration are purged. ``log.txt`` gets one
timestamped line per window, evaluation, checkpoint and the end of the run, appended across resumes.
TensorBoard (``densevision[tensorboard]``) and the loss curve (``densevision[plots]``) are skipped, with one
line, when their package is not installed.
"""

from __future__ import annotations

import datetime
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from tqdm import tqdm

from densevision.extras import MissingExtraError, require
from densevision.io import atomic_open, write_json

if TYPE_CHECKING:
    from matplotlib.figure import Figure

METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
LOG_FILE = "log.txt"
TENSORBOARD_DIR = "tensorboard"
MARKER_POINTS = 30  # a series with at most this many points is drawn with markers (a single point shows)


def distinct_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` RGBA colours that differ from each other: tab10 up to 10, tab20 up to 20, else evenly spaced
    over turbo."""
    from matplotlib import colormaps

    if n <= 10:
        return [colormaps["tab10"](i) for i in range(n)]
    if n <= 20:
        return [colormaps["tab20"](i) for i in range(n)]
    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def _plot_series(ax: Any, series: Sequence[tuple[str, list[float], list[float]]], *, bold: str | None = None) -> None:
    """One line per ``(label, x, y)`` in its own colour, markers when a series is short; ``bold`` is drawn first,
    wider and with larger markers, so that a series lying on it leaves it visible."""
    for (label, xs, ys), colour in zip(series, distinct_colours(len(series)), strict=True):
        ax.plot(xs, ys, label=label, color=colour, linewidth=2.0 if label == bold else 1.0,
                marker="o" if len(xs) <= MARKER_POINTS else None, markersize=6 if label == bold else 3)
    if series:
        ax.legend(fontsize=7, ncol=2 if len(series) > 8 else 1)
    ax.grid(alpha=0.3)


def loss_curve_figure(history: Sequence[Mapping[str, float]], eval_history: Sequence[Mapping[str, float]] = ()
                      ) -> Figure:
    """The loss entries (keys containing ``loss``; ``total_loss`` only when it sums several) of ``history``
    against ``iteration`` and, when given, the evaluation metrics in a second panel; every series in a colour of
    its own, short ones with markers."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 if eval_history else 1
    fig = Figure(figsize=(6.5 * panels, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, panels, 1)
    iterations = [entry["iteration"] for entry in history]
    keys = sorted({k for e in history for k in e if "loss" in k}, key=lambda k: (k != "total_loss", k))
    if len(keys) == 2 and keys[0] == "total_loss":  # the total of one loss is that loss
        keys = keys[1:]
    _plot_series(ax, [(key, iterations, [e.get(key, float("nan")) for e in history]) for key in keys],
                 bold="total_loss")
    if keys and all(entry.get(k, 1.0) > 0 for entry in history for k in keys):
        ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="loss", title="training loss")
    if eval_history:
        ax2 = fig.add_subplot(1, 2, 2)
        names = sorted({k for entry in eval_history for k in entry if k != "iteration"})
        series = []
        for name in names:
            points = [(e["iteration"], e[name]) for e in eval_history if name in e]
            series.append((name, [p[0] for p in points], [p[1] for p in points]))
        _plot_series(ax2, series)
        ax2.set(xlabel="iteration", title="evaluation")
    fig.tight_layout()
    return fig


def plot_loss_curve(
    history: Sequence[Mapping[str, float]], path: str | os.PathLike, eval_history: Sequence[Mapping[str, float]] = ()
) -> None:
    """Write :func:`loss_curve_figure` as a PNG, atomically."""
    fig = loss_curve_figure(history, eval_history)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


def _format(scalars: Mapping[str, float]) -> str:
    return " ".join(f"{k}={v:.4g}" for k, v in scalars.items())


class TrainingLogger:
    """Progress bar, ``log.txt``, TensorBoard and summary files for one run. Inert (keeps no files open, prints
    and writes nothing) when ``enabled`` is False, which is how ranks other than 0 use it.

    ``record(i, scalars)`` takes the scalars of iteration ``i`` (0-based); every ``log_every`` iterations
    their means become one history entry ``{"iteration": i + 1, ...}`` and one line of ``log.txt``.
    """

    def __init__(
        self,
        run_dir: str | os.PathLike,
        *,
        max_iters: int,
        log_every: int = 20,
        enabled: bool = True,
        progress: bool = True,
        tensorboard: bool = True,
    ) -> None:
        self.run_dir = Path(run_dir)
        self.max_iters = max_iters
        self.log_every = max(1, log_every)
        self.enabled = enabled
        self.progress = progress and enabled
        self.tensorboard = tensorboard and enabled
        self.history: list[dict[str, float]] = []
        self.eval_history: list[dict[str, float]] = []
        self._sums: dict[str, float] = {}
        self._count = 0
        self._bar: tqdm | None = None
        self._writer: Any = None
        self._plots = True
        self._start_iter = self._done = 0
        self._start_time = time.perf_counter()

    def log(self, line: str, *, echo: Literal["always", "no_bar", "never"] = "always") -> None:
        """Append ``line`` (timestamped) to ``run_dir/log.txt`` and print it to stderr above the progress bar:
        ``echo="no_bar"`` for routine lines (loss windows, checkpoints) that only need printing when there is no
        progress bar, ``"never"`` for what the caller reports itself (the error that stops a run)."""
        if not self.enabled:
            return
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M:%S")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / LOG_FILE, "a", encoding="utf-8") as f:
            f.write(f"{stamp} {line}\n")
        if echo == "always" or (echo == "no_bar" and self._bar is None):
            tqdm.write(line, file=sys.stderr)

    def start(self, start_iter: int) -> None:
        """Open the progress bar and TensorBoard writer for iterations ``start_iter..max_iters-1``."""
        self._start_iter = self._done = start_iter
        self._start_time = time.perf_counter()
        if self.progress:
            self._bar = tqdm(total=self.max_iters, initial=start_iter, desc="train", dynamic_ncols=True,
                             file=sys.stderr)
        resumed = f", resumed after iteration {start_iter}" if start_iter else ""
        self.log(f"training {self.max_iters} iterations{resumed}", echo="no_bar")
        if self.tensorboard:
            try:
                require("tensorboard", "TensorBoard logging")
                from torch.utils.tensorboard import SummaryWriter
            except (MissingExtraError, ImportError) as exc:
                self.tensorboard = False
                self.log(f"TensorBoard events skipped: {exc}")
                return
            purge = start_iter + 1 if start_iter > 0 else None
            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=purge)

    def _eta(self, done: int) -> str:
        elapsed = time.perf_counter() - self._start_time
        remaining = elapsed / max(done - self._start_iter, 1) * (self.max_iters - done)
        return str(datetime.timedelta(seconds=round(remaining)))

    def record(self, iteration: int, scalars: Mapping[str, float]) -> dict[str, float] | None:
        """Add iteration ``iteration``'s scalars; returns the new history entry when a window closes."""
        for key, value in scalars.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
        self._count += 1
        self._done = iteration + 1
        if self._bar is not None:
            self._bar.update(1)
        done = iteration + 1
        if done % self.log_every and done != self.max_iters:
            return None
        entry = {"iteration": done, **{k: v / self._count for k, v in self._sums.items()}}
        self._sums, self._count = {}, 0
        self.history.append(entry)
        if self._writer is not None:
            for key, value in entry.items():
                if key != "iteration":
                    self._writer.add_scalar(f"train/{key}", value, done)
        if self._bar is not None:
            shown = {k: f"{v:.4g}" for k, v in entry.items() if "loss" in k or k == "lr"}
            self._bar.set_postfix(shown, refresh=False)
        values = {k: v for k, v in entry.items() if k != "iteration"}
        self.log(f"[iter {done}/{self.max_iters}] {_format(values)} eta={self._eta(done)}", echo="no_bar")
        return entry

    def record_metrics(self, iteration: int, metrics: Mapping[str, float]) -> None:
        """Add evaluation ``metrics`` taken after ``iteration`` (0-based) iterations' updates."""
        done = iteration + 1
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.eval_history.append({"iteration": done, **numeric})
        if self._writer is not None:
            for key, value in numeric.items():
                self._writer.add_scalar(f"eval/{key}", value, done)
        self.log(f"[iter {done}/{self.max_iters}] eval: {_format(numeric)}")

    def write_summary(self) -> None:
        """Write ``metrics.json`` and ``loss_curve.png`` (rank 0)."""
        if not self.enabled:
            return
        write_json(self.run_dir / METRICS_FILE, {"train": self.history, "eval": self.eval_history})
        if self.history and self._plots:
            try:
                require("matplotlib", "the loss curve")
            except MissingExtraError as exc:
                self._plots = False
                self.log(f"{LOSS_CURVE_FILE} skipped: {exc}")
            else:
                plot_loss_curve(self.history, self.run_dir / LOSS_CURVE_FILE, self.eval_history)
        if self._writer is not None:
            self._writer.flush()

    def log_end(self, *, metrics: Mapping[str, Any], best: Mapping[str, Any] | None) -> None:
        """The run's last line: iterations done (of ``max_iters``), wall time, the last loss window, the last
        evaluation and the best one."""
        done = self._done
        elapsed = time.perf_counter() - self._start_time
        state = "finished" if done >= self.max_iters else "stopped after"
        parts = [f"{state} {done}/{self.max_iters} iterations in {datetime.timedelta(seconds=round(elapsed))}"]
        losses = {k: v for k, v in (self.history[-1] if self.history else {}).items() if "loss" in k}
        if losses:
            parts.append(f"last window: {_format(losses)}")
        numeric = {k: v for k, v in metrics.items() if isinstance(v, int | float)}
        if numeric:
            parts.append(f"last eval: {_format(numeric)}")
        if best:
            parts.append(f"best {best['metric']}={best['value']:.4g} at iteration {best['iteration']}")
        self.log("; ".join(parts))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "eval_history": list(self.eval_history),
            "window": {"sums": dict(self._sums), "count": self._count},
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.history = list(state["history"])
        self.eval_history = list(state["eval_history"])
        self._sums = dict(state["window"]["sums"])
        self._count = int(state["window"]["count"])
