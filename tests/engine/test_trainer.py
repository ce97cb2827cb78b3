"""The trainer: exact resumption after SIGKILL, non-finite losses, best checkpoint, AMP, hooks, run folder."""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import torch
from torch import nn

from densevision.engine import HookBase, Trainer, build_optimizer
from densevision.errors import DenseVisionError

TIME_KEYS = ("time", "data_time")


def assert_same_tensors(a: dict, b: dict, context: str = "") -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), f"{key} differs {context}"


def assert_same_optimizer_state(a: dict, b: dict) -> None:
    assert a["param_groups"] == b["param_groups"]
    for index, state in a["state"].items():
        assert_same_tensors(state, b["state"][index])


def without_times(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in entry.items() if k not in TIME_KEYS} for entry in history]


def test_sigkill_at_a_random_moment_then_resume_matches_uninterrupted_run(tmp_path, tiny, start_tiny):
    killed = tmp_path / "killed"
    proc = start_tiny(str(killed), "--sleep", "0.1")
    first = killed / "iter_0000008.pt"
    deadline = time.monotonic() + 180
    while not first.exists():
        assert proc.poll() is None, f"training subprocess failed: {proc.stderr.read()}"
        assert time.monotonic() < deadline, "no checkpoint within 180 s"
        time.sleep(0.005)
    delay = random.SystemRandom().uniform(0.0, 0.5)
    time.sleep(delay)  # anywhere in the next ~5 iterations, checkpoint writes included
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL

    for path in killed.glob("*.pt"):  # every checkpoint left behind is complete and safe to load
        torch.load(path, weights_only=True)
    interrupted_at = torch.load(killed / "last.pt", weights_only=True)["iteration"]
    assert 8 <= interrupted_at < 24

    resumed, resumed_trainer, resumed_result = tiny.run_tiny(killed, resume=True)
    assert resumed_trainer.start_iter == interrupted_at
    reference, reference_trainer, reference_result = tiny.run_tiny(tmp_path / "reference")

    assert_same_tensors(resumed.state_dict(), reference.state_dict(), f"(killed {delay:.3f} s after iter 8)")
    assert_same_optimizer_state(
        resumed_trainer.optimizer.state_dict(), reference_trainer.optimizer.state_dict()
    )
    assert resumed_trainer.scheduler.state_dict() == reference_trainer.scheduler.state_dict()
    assert without_times(resumed_trainer.logger.history) == without_times(reference_trainer.logger.history)
    assert resumed_trainer.logger.eval_history == reference_trainer.logger.eval_history
    assert resumed_result["best"] == reference_result["best"]
    final = torch.load(killed / "last.pt", weights_only=True)
    assert final["iteration"] == 24
    assert_same_tensors(final["model"], reference.state_dict())


def test_checkpoint_holds_the_full_training_state(tmp_path, tiny):
    tiny.run_tiny(tmp_path, max_iters=8, eval_every=4)
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["iteration"] == 8
    assert state["data"] == {"next_iteration": 8, "seed": 0, "world_size": 1}
    assert state["config"] == {"max_iters": 8, "batch_size": 4}
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["optimizer"]["state"] and state["scheduler"]["last_epoch"] == 8
    assert state["best"]["metric"] == "acc" and state["best"]["iteration"] in (4, 8)
    assert state["hooks"]["LoggingHook"]["history"][-1]["iteration"] == 8
    assert (tmp_path / "best.pt").is_file() and (tmp_path / "config.yaml").is_file()
    assert (tmp_path / "loss_curve.png").stat().st_size > 1000


def test_resume_of_a_finished_run_trains_no_further(tmp_path, tiny):
    model, _, _ = tiny.run_tiny(tmp_path, max_iters=4)
    again, trainer, result = tiny.run_tiny(tmp_path, max_iters=4, resume=True)
    assert trainer.start_iter == 4 and result["iteration"] == 4
    assert_same_tensors(again.state_dict(), model.state_dict())


def test_run_directory_with_a_checkpoint_needs_resume(tmp_path, tiny):
    tiny.run_tiny(tmp_path, max_iters=4)
    with pytest.raises(DenseVisionError, match="already holds a training checkpoint"):
        tiny.run_tiny(tmp_path, max_iters=8)


class Regression(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


def regression_batch(iteration: int, poison_at: int = -1) -> torch.Tensor:
    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(iteration))
    if iteration == poison_at:
        x[0, 0] = float("nan")
    return x


def regression_trainer(run_dir: Path, max_iters: int, poison_at: int = -1, **kwargs) -> Trainer:
    torch.manual_seed(0)
    model = Regression()
    optimizer = build_optimizer(model, name="sgd", lr=0.1)
    return Trainer(
        model, optimizer, lambda i: regression_batch(i, poison_at), run_dir=run_dir, max_iters=max_iters,
        loss_fn=lambda m, x: {"loss": (m(x) - x.sum(1, keepdim=True)).pow(2).mean()}, progress=False,
        tensorboard=False, **kwargs,
    )


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path):
    trainer = regression_trainer(tmp_path / "run", 20, poison_at=7, checkpoint_every=5)
    with pytest.raises(DenseVisionError, match=r"non-finite loss at iteration 7 \(loss=nan") as info:
        trainer.train()
    assert "last.pt" in str(info.value)
    assert sorted(p.name for p in (tmp_path / "run").glob("*.pt")) == ["iter_0000005.pt", "last.pt"]
    state = torch.load(tmp_path / "run" / "last.pt", weights_only=True)
    assert state["iteration"] == 5
    good = regression_trainer(tmp_path / "good", 5, checkpoint_every=5)
    good.train()
    assert_same_tensors(state["model"], good.module.state_dict())
    assert all(torch.isfinite(p).all() for p in trainer.module.parameters())  # no step with the NaN loss


def test_infinite_loss_before_any_checkpoint(tmp_path):
    trainer = regression_trainer(tmp_path, 10, poison_at=0, checkpoint_every=5)
    with pytest.raises(DenseVisionError, match="iteration 0 .*no checkpoint was written"):
        trainer.train()


def test_best_checkpoint_follows_best_metric(tmp_path):
    scores = iter([0.3, 0.7, 0.5])
    trainer = regression_trainer(
        tmp_path, 6, checkpoint_every=3, eval_every=2, evaluator=lambda m: {"ap": next(scores)},
        best_metric="ap",
    )
    result = trainer.train()
    assert result["best"] == {"metric": "ap", "value": 0.7, "iteration": 4}
    assert result["metrics"] == {"ap": 0.5}
    best = torch.load(tmp_path / "best.pt", weights_only=True)
    assert best["iteration"] == 4 and best["best"]["value"] == 0.7
    assert sorted(p.name for p in tmp_path.glob("iter_*.pt")) == ["iter_0000003.pt", "iter_0000006.pt"]


def test_best_mode_min_and_missing_metric(tmp_path):
    scores = iter([0.3, 0.1, 0.2])
    trainer = regression_trainer(
        tmp_path / "a", 3, eval_every=1, evaluator=lambda m: {"loss": next(scores)}, best_metric="loss",
        best_mode="min",
    )
    assert trainer.train()["best"]["iteration"] == 2
    trainer = regression_trainer(tmp_path / "b", 3, eval_every=1, evaluator=lambda m: {"ap": 1.0},
                                 best_metric="AP")
    with pytest.raises(DenseVisionError, match="best_metric 'AP' is not among the evaluator's metrics"):
        trainer.train()


def test_evaluator_sees_eval_mode_without_gradients(tmp_path):
    seen = []

    def evaluator(model: nn.Module) -> dict:
        seen.append((model.training, torch.is_grad_enabled()))
        return {"n": len(seen)}

    trainer = regression_trainer(tmp_path, 4, eval_every=2, evaluator=evaluator)
    trainer.train()
    assert seen == [(False, False), (False, False)]
    assert trainer.module.training


def test_bf16_autocast_on_cpu(tmp_path):
    dtypes = []
    trainer = regression_trainer(tmp_path, 3, amp="bf16")
    trainer.module.fc.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    before = trainer.module.fc.weight.detach().clone()
    trainer.train()
    assert dtypes == [torch.bfloat16] * 3
    assert trainer.module.fc.weight.dtype == torch.float32
    assert not torch.equal(before, trainer.module.fc.weight)


def test_fp16_and_unknown_amp_are_refused_on_cpu(tmp_path):
    with pytest.raises(DenseVisionError, match="fp16 mixed precision needs a CUDA device"):
        regression_trainer(tmp_path, 3, amp="fp16")
    with pytest.raises(DenseVisionError, match="unknown AMP mode 'fp8'"):
        regression_trainer(tmp_path, 3, amp="fp8")


def test_gradient_clipping_bounds_the_update(tmp_path):
    trainer = regression_trainer(tmp_path, 1, grad_clip=1e-3)
    before = trainer.module.fc.weight.detach().clone()
    trainer.train()
    step = (trainer.module.fc.weight - before).norm()
    assert step <= 0.1 * 1e-3 + 1e-7  # lr × clipped norm
    assert trainer.logger.history[-1]["grad_norm"] > 1e-3  # the raw norm is logged


class CountingHook(HookBase):
    """Counts steps; its count survives a resume through state_dict."""

    def __init__(self, log: list) -> None:
        self.log = log
        self.count = 0

    def before_train(self) -> None:
        self.log.append(("before_train", self.trainer.start_iter))

    def after_step(self) -> None:
        self.count += 1
        self.log.append(("after_step", self.trainer.iter))

    def after_train(self) -> None:
        self.log.append(("after_train", self.trainer.iter))

    def state_dict(self) -> dict:
        return {"count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.count = state["count"]


def test_hooks_run_in_order_and_keep_their_state_across_resume(tmp_path):
    log: list = []
    regression_trainer(tmp_path, 4, checkpoint_every=2, hooks=[CountingHook(log)]).train()
    assert log == [("before_train", 0), *[("after_step", i) for i in range(4)], ("after_train", 3)]
    names = [type(h).__name__ for h in regression_trainer(tmp_path / "x", 4, hooks=[CountingHook([])],
                                                        evaluator=lambda m: {}).hooks]
    assert names == ["EvalHook", "CountingHook", "LoggingHook", "CheckpointHook"]

    (tmp_path / "last.pt").unlink()
    (tmp_path / "iter_0000002.pt").rename(tmp_path / "last.pt")
    hook = CountingHook([])
    trainer = regression_trainer(tmp_path, 4, checkpoint_every=2, hooks=[hook], resume=True)
    trainer.train()
    assert trainer.start_iter == 2 and hook.count == 4


def test_tensor_loss_and_callable_data(tmp_path):
    torch.manual_seed(0)
    model = Regression()
    trainer = Trainer(
        model, build_optimizer(model, lr=0.1), lambda i: regression_batch(i), run_dir=tmp_path, max_iters=2,
        loss_fn=lambda m, x: m(x).pow(2).mean(), progress=False, tensorboard=False, log_every=1,
    )
    result = trainer.train()
    assert result["iteration"] == 2 and set(result["losses"]) >= {"loss", "total_loss", "lr"}


def test_invalid_arguments(tmp_path):
    with pytest.raises(DenseVisionError, match="max_iters must be positive"):
        regression_trainer(tmp_path, 0)
    with pytest.raises(DenseVisionError, match="needs an evaluator"):
        regression_trainer(tmp_path, 2, best_metric="ap")
    with pytest.raises(DenseVisionError, match="neither iteration-indexed"):
        Trainer(Regression(), build_optimizer(Regression(), lr=0.1), [1, 2], run_dir=tmp_path, max_iters=1,
                progress=False, tensorboard=False).train()
