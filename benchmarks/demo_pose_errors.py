"""Where keypoint OKS is lost on the synthetic shapes: per category, and for ellipses and rings by axis ratio.

Reads a ground-truth COCO keypoint file and keypoint results from its ground-truth boxes (``pose predict --ann GT
--gt-boxes``); each result is matched to the annotation of the same image with the same box. Per category the
table gives the instances, their mean OKS (COCO's, with the category's sigmas and the annotation's area, over the
labelled keypoints), the share above 0.75, and the mean OKS of the instances with and without an occluded keypoint
(v = 1). An ellipse's or ring's keypoints are the ends of its axes: the rounder the shape, the less its image tells
where they are; its rows split the instances with all four ends labelled by minor / major axis ratio.

    densevision pose predict --checkpoint RUN --images DIR --ann GT.json --gt-boxes --out kp.json
    python benchmarks/demo_pose_errors.py --gt GT.json --results kp.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict

import numpy as np

from densevision.data.jsonio import read_json

AXIS_CATEGORIES = ("ellipse", "ring")
RATIO_BINS = ((0.5, 0.7), (0.7, 0.85), (0.85, 1.0))  # [lo, hi), the last one [0.85, 1]


def instance_oks(gt: np.ndarray, pred: np.ndarray, area: float, sigmas: np.ndarray) -> float:
    """COCO OKS of predicted K×3 keypoints against ground truth K×3 (over the labelled ones, v > 0)."""
    labelled = gt[:, 2] > 0
    d2 = ((gt[:, :2] - pred[:, :2]) ** 2).sum(1)
    return float(np.exp(-d2 / (2 * area * (2 * sigmas) ** 2 + np.spacing(1)))[labelled].mean())


def axis_ratio(gt: np.ndarray) -> float | None:
    """Minor / major half-axis of an ellipse from its four labelled axis ends (None unless all four are)."""
    if not (gt[:, 2] > 0).all():
        return None
    radii = np.linalg.norm(gt[:, :2] - gt[:, :2].mean(0), axis=1)
    return float(radii.min() / radii.max())


def mean(values: list[float]) -> str:
    return f"{np.mean(values):.3f}" if values else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO keypoint annotations")
    parser.add_argument("--results", required=True, help="keypoint results from the ground-truth boxes")
    args = parser.parse_args()
    gt, results = read_json(args.gt), read_json(args.results)
    categories = {c["id"]: c for c in gt["categories"] if c.get("keypoints")}
    found = {(r["image_id"], r["category_id"], tuple(np.round(r["bbox"], 1))): r for r in results}
    rows: dict[int, list[tuple[float, bool, float | None]]] = defaultdict(list)
    for ann in gt["annotations"]:
        result = found.get((ann["image_id"], ann["category_id"], tuple(np.round(ann["bbox"], 1))))
        cat = categories.get(ann["category_id"])
        if result is None or cat is None or not ann.get("num_keypoints"):
            continue
        truth = np.asarray(ann["keypoints"], np.float64).reshape(-1, 3)
        pred = np.asarray(result["keypoints"], np.float64).reshape(-1, 3)
        oks = instance_oks(truth, pred, ann["area"], np.asarray(cat["kpt_sigmas"], np.float64))
        ratio = axis_ratio(truth) if cat["name"] in AXIS_CATEGORIES else None
        rows[cat["id"]].append((oks, bool((truth[:, 2] == 1).any()), ratio))
    print(f"{'category':<22} {'n':>4} {'OKS':>6} {'>0.75':>6} {'occluded':>9} {'clear':>6}")
    for cat_id, entries in sorted(rows.items()):
        oks = [e[0] for e in entries]
        print(f"{categories[cat_id]['name']:<22} {len(entries):>4} {np.mean(oks):>6.3f} "
              f"{np.mean(np.array(oks) > 0.75):>6.2f} {mean([e[0] for e in entries if e[1]]):>9} "
              f"{mean([e[0] for e in entries if not e[1]]):>6}")
        for lo, hi in RATIO_BINS if categories[cat_id]["name"] in AXIS_CATEGORIES else ():
            inside = [e[0] for e in entries if e[2] is not None and lo <= e[2] and (e[2] < hi or hi == 1.0)]
            label = f"  axis ratio {lo:.2f}-{hi:.2f}"
            print(f"{label:<22} {len(inside):>4} {mean(inside):>6}")


if __name__ == "__main__":
    main()
