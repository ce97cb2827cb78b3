"""Cascade Mask R-CNN against Mask R-CNN: same backbone, starting weights, recipe, data and iterations.

Both detectors train with identical ``detect train`` flags (only ``--detector`` differs) on the same synthetic
training split, and each run's final evaluation on the validation split gives bbox, segm and Boundary AP with AP50
/ AP75. ``--backbone-from CKPT`` starts both backbones from the ``backbone.body.*`` tensors of a densevision
detector checkpoint (e.g. the shipped demo detector, the stand-in for ImageNet weights, which the synthetic shapes
do not need); without it both start from scratch. ``--jobs 2`` trains the two side by side, each on
``--threads`` CPU threads. Every command is printed, so a row can be reproduced alone.

    python benchmarks/cascade_vs_mask_rcnn.py --iters 2000 --out runs/cascade_vs_mask_rcnn \\
        --backbone-from densevision/assets/demo_detector.pt --jobs 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from densevision.data.synthetic import generate
from densevision.engine.checkpoint import read_checkpoint

DETECTORS = ("mask_rcnn", "cascade_mask_rcnn")
COLUMNS = [f"{kind}/{metric}" for kind in ("bbox", "segm", "boundary") for metric in ("AP", "AP50", "AP75")]


def extract_backbone(checkpoint: Path, out: Path, prefix: str = "backbone.body.") -> Path:
    """Write the ``prefix*`` tensors of a detector checkpoint, prefix removed and in fp32, as a backbone state
    dict that ``--backbone-weights`` loads."""
    state = read_checkpoint(checkpoint)
    state = state.get("model", state)
    body = {k[len(prefix):]: v.float() if v.is_floating_point() else v for k, v in state.items()
            if k.startswith(prefix)}
    if not body:
        raise SystemExit(f"{checkpoint}: no tensors under {prefix!r}")
    torch.save(body, out)
    return out


def train_commands(args: argparse.Namespace, data: Path, root: Path, weights: Path | None) -> dict[str, list[str]]:
    """The ``detect train`` argument list of each detector; they differ only in ``--detector`` and ``--out``."""
    common = ["detect", "train", "--data", str(data), "--backbone", args.backbone, "--min-size", str(args.input),
              "--max-size", str(args.input), "--iters", str(args.iters), "--batch-size", str(args.batch_size),
              "--lr", str(args.lr), "--warmup-iters", str(args.warmup), "--grad-clip", "10", "--anchor-scale", "4",
              "--eval-every", str(args.eval_every), "--seed", str(args.seed), "--device", args.device,
              "--backbone-weights", str(weights) if weights else "none", "--no-tensorboard", "--no-progress",
              *shlex.split(args.det_args)]
    return {name: [*common, "--detector", name, "--out", str(root / name)] for name in DETECTORS}


def run_all(commands: dict[str, list[str]], jobs: int, threads: int | None) -> dict[str, float]:
    """Run the commands as ``python -m densevision`` processes, ``jobs`` at a time; wall seconds of each."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    pending, running, seconds = list(commands.items()), {}, {}
    while pending or running:
        while pending and len(running) < jobs:
            name, argv = pending.pop(0)
            print("$ densevision " + shlex.join(argv), flush=True)
            running[name] = (subprocess.Popen([sys.executable, "-m", "densevision", *argv], env=env),
                             time.perf_counter())
        time.sleep(5)
        for name, (proc, start) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"{name}: detect train failed with exit status {proc.returncode}")
                seconds[name] = time.perf_counter() - start
                del running[name]
    return seconds


def final_metrics(run: Path) -> dict[str, float]:
    """The last evaluation of a run (``metrics.json``)."""
    evals = json.loads((run / "metrics.json").read_text())["eval"]
    return evals[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="data folder like `densevision data synth` output (default: generate one)")
    parser.add_argument("--train", type=int, default=1000, help="generated training images (default 1000)")
    parser.add_argument("--val", type=int, default=200, help="generated validation images (default 200)")
    parser.add_argument("--size", type=int, default=512, help="generated image side (default 512)")
    parser.add_argument("--seed", type=int, default=0, help="data and training seed")
    parser.add_argument("--backbone", default="hrnet_w18_small_v2", help="zoo model or timm:<name>")
    parser.add_argument("--backbone-from", type=Path, help="detector checkpoint whose backbone starts both")
    parser.add_argument("--input", type=int, default=160, help="detector input side (default 160, the demo's)")
    parser.add_argument("--iters", type=int, default=2000, help="training iterations of each detector")
    parser.add_argument("--batch-size", type=int, default=2, help="images per iteration (default 2)")
    parser.add_argument("--lr", type=float, default=0.01, help="SGD learning rate (default 0.01, the demo's)")
    parser.add_argument("--warmup", type=int, default=250, help="warm-up iterations (default 250)")
    parser.add_argument("--eval-every", type=int, default=500, help="evaluation interval (default 500)")
    parser.add_argument("--det-args", default="", help="extra `detect train` flags for both")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--jobs", type=int, default=1, help="detectors trained at once (default 1)")
    parser.add_argument("--threads", type=int, help="CPU threads of each training process")
    parser.add_argument("--out", type=Path, required=True, help="data, runs and the table go here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    data = Path(args.data) if args.data else args.out / "data"
    if not args.data and not (data / "annotations" / "instances_val.json").exists():
        generate(data, train=args.train, val=args.val, size=args.size, seed=args.seed, progress=False)
    weights = extract_backbone(args.backbone_from, args.out / "backbone_init.pt") if args.backbone_from else None
    seconds = run_all(train_commands(args, data, args.out, weights), args.jobs, args.threads)
    rows = {name: {**{k: final_metrics(args.out / name).get(k) for k in ["iteration", *COLUMNS]},
                   "train_s": seconds[name]} for name in DETECTORS}
    print(f"\n{'detector':<18}" + "".join(f"{c:>15}" for c in COLUMNS) + f"{'train s':>9}")
    for name, r in rows.items():
        print(f"{name:<18}" + "".join(f"{r[c]:>15.2f}" for c in COLUMNS) + f"{r['train_s']:>9.0f}")
    gain = {c: rows["cascade_mask_rcnn"][c] - rows["mask_rcnn"][c] for c in COLUMNS}
    print(f"{'cascade - mask':<18}" + "".join(f"{gain[c]:>+15.2f}" for c in COLUMNS))
    (args.out / "comparison.json").write_text(json.dumps({"rows": rows, "cascade_gain": gain}, indent=1))


if __name__ == "__main__":
    main()
