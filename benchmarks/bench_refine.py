"""Throughput of ``bpr refine`` and the share of its wall time spent outside the network.

The refinement itself is timed by :func:`densevision.bench.benchmark_refine` (``densevision bench --refine``):
synthetic 512² images whose ground truth is made Mask R-CNN-coarse, refined by the default network (random
weights unless ``--checkpoint``). Reports instances/s, patches/s and the seconds per stage; "extract" (decode,
proposals, cropping) plus "merge" (reassembly, RLE encoding, boxes) must stay under 10 % of the wall time.

It also times the upstream formulation of the proposals (a full-image 3×3 convolution per instance, then NMS
over every boundary pixel, written here as the reference) against ``propose_patches`` on the same masks.

    python benchmarks/bench_refine.py --images 20 --device cuda
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torchvision.ops import nms

from densevision.bench import benchmark_refine, coarse_results
from densevision.data.jsonio import read_json
from densevision.data.synthetic import generate
from densevision.refine.patches import decode_masks, propose_patches
from densevision.refine.pipeline import check_results


def upstream_proposals(mask: torch.Tensor, patch_size: int, nms_iou: float) -> torch.Tensor:
    """Reference: BPR's ``get_dets`` for one instance (full-image convolution, NMS over all boundary pixels)."""
    s = F.conv2d(mask[None, None].float(), torch.ones(1, 1, 3, 3, device=mask.device), padding=1)[0, 0]
    score = torch.minimum((s - 9).abs(), s) / 4.5
    ys, xs = torch.nonzero(score, as_tuple=True)
    half = patch_size // 2
    boxes = torch.stack([xs - half, ys - half, xs + half, ys + half], 1).float()
    return boxes[nms(boxes, score[ys, xs], nms_iou)]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_proposals(ann_path: Path, image_root: Path, results: list[dict], nms_iou: float,
                   device: torch.device) -> dict[str, float]:
    data = read_json(ann_path)
    checked = check_results(results, data["images"])
    per_image: dict[int, list] = {}
    for r in checked:
        per_image.setdefault(r["image_id"], []).append(r["segmentation"])
    masks = [decode_masks(rles, *rles[0]["size"]).to(device) for rles in per_image.values()]
    for m in masks[:2]:  # warm-up
        propose_patches(m, nms_iou=nms_iou)
        upstream_proposals(m[0], 64, nms_iou)
    sync(device)
    start = time.perf_counter()
    ours = sum(len(propose_patches(m, nms_iou=nms_iou)[0]) for m in masks)
    sync(device)
    mid = time.perf_counter()
    theirs = sum(len(upstream_proposals(inst, 64, nms_iou)) for m in masks for inst in m)
    sync(device)
    end = time.perf_counter()
    n = sum(len(m) for m in masks)
    return {"instances": n, "ours_ms_per_instance": 1000 * (mid - start) / n,
            "upstream_ms_per_instance": 1000 * (end - mid) / n, "ours_patches": ours, "upstream_patches": theirs}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20, help="synthetic images (default 20)")
    parser.add_argument("--size", type=int, default=512, help="image side (default 512)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batch", type=int, default=64, help="patches per network batch (default 64)")
    parser.add_argument("--nms-iou", type=float, default=0.25)
    parser.add_argument("--checkpoint", help="a trained BPR run or file (default: random weights)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs after one warm-up (default 2)")
    parser.add_argument("--out", help="also write the numbers here as json")
    args = parser.parse_args()

    report = benchmark_refine(images=args.images, size=args.size, batch=args.batch, nms_iou=args.nms_iou,
                              device=args.device, checkpoint=args.checkpoint, repeats=args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        ann = generate(tmp, train=0, val=args.images, size=args.size, seed=0, progress=False)["val"]
        results = coarse_results(read_json(ann))
        report["proposals"] = time_proposals(ann, Path(tmp) / "val", results, args.nms_iou, torch.device(args.device))
    report["patches_per_s"] = report["proposals"]["ours_patches"] / report["wall_s"]
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
