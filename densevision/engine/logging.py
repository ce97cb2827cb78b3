"""What a training run reports: a tqdm progress bar with losses and ETA, TensorBoard scalars
(``run_dir/tensorboard``), ``run_dir/metrics.json`` and ``run_dir/loss_curve.png``.

Per-iteration scalars are averaged over windows of ``log_every`` iterations; the windowed history is part
of the checkpoint (:meth:`TrainingLogger.state_dict`), so a resumed run reports the same curve as an
uninterrupted one, and TensorBoard events after the resumed iteration are purged.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from tqdm import tqdm

from densevision.io import atomic_open, write_json

METRICS_FILE = "metrics.json"
LOSS_CURVE_FILE = "loss_curve.png"
TENSORBOARD_DIR = "tensorboard"


def plot_loss_curve(
    history: list[dict[str, float]], path: str | os.PathLike, eval_history: list[dict[str, float]] = ()
) -> None:
    """Draw the loss entries (keys containing ``loss``) of ``history`` against ``iteration`` and, when given,
    the evaluation metrics in a second panel; write a PNG atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = 2 if eval_history else 1
    fig = Figure(figsize=(6.5 * panels, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, panels, 1)
    iterations = [entry["iteration"] for entry in history]
    keys = sorted({k for e in history for k in e if "loss" in k}, key=lambda k: (k != "total_loss", k))
    for key in keys:
        values = [entry.get(key, float("nan")) for entry in history]
        ax.plot(iterations, values, label=key, linewidth=2.0 if key == "total_loss" else 1.0)
    if keys and all(entry.get(k, 1.0) > 0 for entry in history for k in keys):
        ax.set_yscale("log")
    ax.set(xlabel="iteration", ylabel="loss", title="training loss")
    ax.grid(alpha=0.3)
    if keys:
        ax.legend(fontsize=8)
    if eval_history:
        ax2 = fig.add_subplot(1, 2, 2)
        names = sorted({k for entry in eval_history for k in entry if k != "iteration"})
        for name in names:
            points = [(e["iteration"], e[name]) for e in eval_history if name in e]
            ax2.plot(*zip(*points, strict=True), marker="o", label=name)
        ax2.set(xlabel="iteration", title="evaluation")
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")


class TrainingLogger:
    """Progress bar, TensorBoard and summary files for one run. Inert (keeps no files open, prints nothing)
    when ``enabled`` is False, which is how ranks other than 0 use it.

    ``record(i, scalars)`` takes the scalars of iteration ``i`` (0-based); every ``log_every`` iterations
    their means become one history entry ``{"iteration": i + 1, ...}``.
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

    def start(self, start_iter: int) -> None:
        """Open the progress bar and TensorBoard writer for iterations ``start_iter..max_iters-1``."""
        if self.progress:
            self._bar = tqdm(total=self.max_iters, initial=start_iter, desc="train", dynamic_ncols=True,
                             file=sys.stderr)
        if self.tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            purge = start_iter + 1 if start_iter > 0 else None
            self._writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=purge)

    def record(self, iteration: int, scalars: Mapping[str, float]) -> dict[str, float] | None:
        """Add iteration ``iteration``'s scalars; returns the new history entry when a window closes."""
        for key, value in scalars.items():
            self._sums[key] = self._sums.get(key, 0.0) + float(value)
        self._count += 1
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
        return entry

    def record_metrics(self, iteration: int, metrics: Mapping[str, float]) -> None:
        """Add evaluation ``metrics`` taken after ``iteration`` (0-based) iterations' updates."""
        done = iteration + 1
        numeric = {k: float(v) for k, v in metrics.items() if isinstance(v, int | float)}
        self.eval_history.append({"iteration": done, **numeric})
        if self._writer is not None:
            for key, value in numeric.items():
                self._writer.add_scalar(f"eval/{key}", value, done)
        if self.enabled:
            text = ", ".join(f"{k}={v:.4g}" for k, v in numeric.items())
            tqdm.write(f"[iter {done}] eval: {text}", file=sys.stderr)

    def write_summary(self) -> None:
        """Write ``metrics.json`` and ``loss_curve.png`` (rank 0)."""
        if not self.enabled:
            return
        write_json(self.run_dir / METRICS_FILE, {"train": self.history, "eval": self.eval_history})
        if self.history:
            plot_loss_curve(self.history, self.run_dir / LOSS_CURVE_FILE, self.eval_history)
        if self._writer is not None:
            self._writer.flush()

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
