"""Training-iteration cost of Cascade Mask R-CNN against Mask R-CNN with the same backbone, heads and sizes.

Both detectors (same backbone, box head, head sizes, image size) run a full training step (forward, backward,
SGD step) on the same batch of random images with random ground-truth boxes and masks; the detectors are timed
alternately (Mask R-CNN, cascade with one mask head per stage, cascade with one final mask head, and again), so
that load changes of a shared machine affect all alike. Prints the median seconds per iteration and each
cascade's ratio to Mask R-CNN (median of the per-round ratios).

    python benchmarks/cascade_speed.py --backbone swin_tiny_patch4_window7_224 --size 512 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from densevision.detection.mask_rcnn import build_mask_rcnn

STYLES = {"mask_rcnn": {"detector": "mask_rcnn"},
          "cascade_per_stage": {"detector": "cascade_mask_rcnn", "cascade_mask_heads": "per_stage"},
          "cascade_final": {"detector": "cascade_mask_rcnn", "cascade_mask_heads": "final"}}


def random_batch(batch: int, size: int, objects: int, num_classes: int, seed: int = 0) -> tuple[list, list]:
    """``batch`` random ``3×size×size`` images, each with ``objects`` random boxes, labels and box masks."""
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(batch):
        xy = torch.rand(objects, 2, generator=g) * size * 0.7
        wh = 16 + torch.rand(objects, 2, generator=g) * size * 0.3
        boxes = torch.cat([xy, (xy + wh).clamp(max=size - 1)], 1)
        masks = torch.zeros(objects, size, size, dtype=torch.uint8)
        for m, (x0, y0, x1, y1) in zip(masks, boxes.int().tolist(), strict=True):
            m[y0:y1, x0:x1] = 1
        labels = torch.randint(1, num_classes + 1, (objects,), generator=g)
        images.append(torch.rand(3, size, size, generator=g))
        targets.append({"boxes": boxes, "labels": labels, "masks": masks})
    return images, targets


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="swin_tiny_patch4_window7_224")
    parser.add_argument("--box-head", default="4conv1fc", choices=("2fc", "4conv1fc"))
    parser.add_argument("--heads", default="light", choices=("light", "torchvision"))
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--objects", type=int, default=8)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", help="write the results as JSON")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    images, targets = random_batch(args.batch, args.size, args.objects, args.classes)
    models, optimizers = {}, {}
    for name, options in STYLES.items():
        torch.manual_seed(0)
        model = build_mask_rcnn(args.backbone, args.classes, box_head=args.box_head, heads=args.heads,
                                min_size=args.size, max_size=args.size, **options).train()
        models[name] = model
        optimizers[name] = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)

    def step(name: str) -> float:
        start = time.perf_counter()
        losses = models[name](images, targets)
        optimizers[name].zero_grad()
        sum(losses.values()).backward()
        optimizers[name].step()
        return time.perf_counter() - start

    for name in STYLES:  # warm-up
        step(name)
    times: dict[str, list[float]] = {name: [] for name in STYLES}
    for _ in range(args.rounds):
        for name in STYLES:
            times[name].append(step(name))
    result = {"backbone": args.backbone, "box_head": args.box_head, "heads": args.heads, "size": args.size,
              "batch": args.batch, "objects": args.objects, "threads": torch.get_num_threads(),
              "rounds": args.rounds, "seconds": times,
              "median_s": {name: statistics.median(t) for name, t in times.items()}}
    for name in ("cascade_per_stage", "cascade_final"):
        ratios = [c / m for c, m in zip(times[name], times["mask_rcnn"], strict=True)]
        result[f"{name}_ratio"] = statistics.median(ratios)
    print(json.dumps({k: v for k, v in result.items() if k != "seconds"}, indent=1))
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
