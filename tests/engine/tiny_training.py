"""A tiny training run with every source of randomness the engine must control: shuffled data, random
augmentation through Python, NumPy and torch generators, dropout, BatchNorm, momentum, warm-up + step LR,
gradient clipping, periodic evaluation selecting ``best.pt``.

Used in-process by the engine tests (:func:`run_tiny`) and as a script for the kill / resume and distributed
tests::

    python tests/engine/tiny_training.py RUN_DIR [--resume] [--sleep S] [--max-iters N] [--out FILE]

Under torchrun's environment variables (``WORLD_SIZE`` > 1) it joins a gloo process group first.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from densevision.engine import (
    HookBase,
    IterationLoader,
    Trainer,
    build_optimizer,
    build_scheduler,
    destroy_distributed,
    gather_results,
    init_distributed,
    shard_indices,
)

NUM_SAMPLES = 20
NUM_CLASSES = 3
EVAL_SAMPLES = 7


def make_samples(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` inputs 1×6×6 whose class is the brightest third of the image."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 6, 6, generator=g)
    y = torch.randint(0, NUM_CLASSES, (n,), generator=g)
    for i in range(n):
        x[i, :, 2 * int(y[i]):2 * int(y[i]) + 2] += 1.5
    return x, y


class JitterDataset(Dataset):
    """Samples with random noise (torch), random gain (NumPy) and random horizontal flip (Python)."""

    def __init__(self) -> None:
        self.x, self.y = make_samples(NUM_SAMPLES, seed=1)

    def __len__(self) -> int:
        return NUM_SAMPLES

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.x[index] + 0.1 * torch.randn(self.x[index].shape)
        x = x * float(np.random.uniform(0.9, 1.1))
        if random.random() < 0.5:
            x = x.flip(-1)
        return x, self.y[index]


class TinyNet(nn.Module):
    """conv 3×3 → (BatchNorm) → ReLU → dropout → linear; ``forward((x, y))`` returns two losses."""

    def __init__(self, *, batch_norm: bool = True, dropout: float = 0.3) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.norm = nn.BatchNorm2d(4) if batch_norm else nn.Identity()
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(4 * 6 * 6, NUM_CLASSES)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.drop(F.relu(self.norm(self.conv(x)))).flatten(1))

    def forward(self, batch: tuple[torch.Tensor, torch.Tensor]) -> dict[str, torch.Tensor]:
        x, y = batch
        logits = self.logits(x)
        return {"loss_cls": F.cross_entropy(logits, y), "loss_reg": 1e-3 * logits.pow(2).mean()}


def evaluate(model: TinyNet) -> dict[str, float]:
    """Accuracy on a fixed evaluation set, computed on this rank's shard and gathered (distributed eval)."""
    x, y = make_samples(EVAL_SAMPLES, seed=2)
    hits = [bool(model.logits(x[i:i + 1]).argmax(1) == y[i]) for i in shard_indices(EVAL_SAMPLES)]
    hits = gather_results(hits)
    return {"acc": sum(hits) / len(hits), "num_eval": len(hits)}


class SleepHook(HookBase):
    """Slows each iteration down so that a test can kill the run in the middle."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def after_step(self) -> None:
        time.sleep(self.seconds)


def run_tiny(
    run_dir: str | Path,
    *,
    max_iters: int = 24,
    resume: bool = False,
    sleep: float = 0.0,
    batch_size: int = 4,
    batch_norm: bool = True,
    dropout: float = 0.3,
    checkpoint_every: int = 4,
    eval_every: int = 8,
    amp: str = "off",
    seed: int = 0,
) -> tuple[TinyNet, Trainer, dict]:
    """Build and train the tiny model; returns the model, the trainer and ``train()``'s result."""
    torch.manual_seed(123)
    model = TinyNet(batch_norm=batch_norm, dropout=dropout)
    optimizer = build_optimizer(model, name="sgd", lr=0.05, momentum=0.9, weight_decay=1e-4)
    scheduler = build_scheduler(optimizer, max_iters=max_iters, schedule="step", warmup_iters=3,
                                milestones=[max_iters * 3 // 4])
    data = IterationLoader(JitterDataset(), batch_size, seed=seed)
    hooks = [SleepHook(sleep)] if sleep > 0 else []
    trainer = Trainer(
        model, optimizer, data, scheduler=scheduler, run_dir=run_dir, max_iters=max_iters, amp=amp,
        grad_clip=1.0, checkpoint_every=checkpoint_every, eval_every=eval_every, evaluator=evaluate,
        best_metric="acc", log_every=3, config={"max_iters": max_iters, "batch_size": batch_size}, seed=seed,
        hooks=hooks, progress=False, tensorboard=False, resume=resume,
    )
    return model, trainer, trainer.train()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir")
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--max-iters", type=int, default=24)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--no-batch-norm", action="store_true")
    parser.add_argument("--dropout", type=float, default=0.3)
    parser.add_argument("--out", help="save the final state dict here (rank N writes OUT.rankN)")
    args = parser.parse_args(argv)
    info = init_distributed("cpu")
    try:
        model, _, result = run_tiny(
            args.run_dir, max_iters=args.max_iters, resume=args.resume, sleep=args.sleep,
            batch_size=args.batch_size, batch_norm=not args.no_batch_norm, dropout=args.dropout,
        )
        if args.out:
            torch.save({"model": model.state_dict(), "result": result}, f"{args.out}.rank{info.rank}")
    finally:
        destroy_distributed()
    return 0


if __name__ == "__main__":
    sys.exit(main())
