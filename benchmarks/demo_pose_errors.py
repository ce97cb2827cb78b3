"""Where keypoint OKS is lost on the synthetic shapes: per category, by object size, for ellipses and rings by axis
ratio, and what keypoint AP would be if one kind of error were gone.

Reads a ground-truth COCO keypoint file and keypoint results from its ground-truth boxes (``pose predict --ann GT
--gt-boxes``); each result is matched to the annotation of the same image with the same box. Per category the
table gives the instances, their mean OKS (COCO's, with the category's sigmas and the annotation's area, over the
labelled keypoints), the share above 0.75, and the mean OKS of the instances with and without an occluded keypoint
(v = 1). An ellipse's or ring's keypoints are the ends of its axes: the rounder the shape, the less its image tells
where they are; its rows split the instances with all four ends labelled by minor / major axis ratio. The size
table splits every instance by √area. The error budget recomputes keypoint AP (pycocotools) with the scores
replaced by each instance's true OKS (a perfect ranking), with the occluded keypoints put on their truth, and with
the visible keypoints' errors divided by 1.5 and by 2 (what a network that localises 1.5× or 2× more precisely
would score).

    densevision pose predict --checkpoint RUN --images DIR --ann GT.json --gt-boxes --out kp.json
    python benchmarks/demo_pose_errors.py --gt GT.json --results kp.json
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from densevision.data.jsonio import read_json
from densevision.evaluation import evaluate

AXIS_CATEGORIES = ("ellipse", "ring")
RATIO_BINS = ((0.5, 0.7), (0.7, 0.85), (0.85, 1.0))  # [lo, hi), the last one [0.85, 1]
SIZE_BINS = ((0, 16), (16, 32), (32, 64), (64, 128), (128, float("inf")))  # √area in pixels, [lo, hi)


@dataclass
class Match:
    """One annotation and the result from its box: K×3 keypoints each, the category's sigmas, the area."""

    result: dict[str, Any]
    truth: np.ndarray
    pred: np.ndarray
    sigmas: np.ndarray
    area: float
    category: str
    category_id: int

    @property
    def oks(self) -> float:
        return instance_oks(self.truth, self.pred, self.area, self.sigmas)


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


def mean(values: Sequence[float] | np.ndarray) -> str:
    return f"{np.mean(values):.3f}" if len(values) else "-"


def match_results(gt: dict[str, Any], results: list[dict[str, Any]]) -> list[Match]:
    """The annotations with labelled keypoints that have a result from their box (each result matched once)."""
    categories = {c["id"]: c for c in gt["categories"] if c.get("keypoints")}
    found = {(r["image_id"], r["category_id"], tuple(np.round(r["bbox"], 1))): r for r in results}
    matches = []
    for ann in gt["annotations"]:
        result = found.pop((ann["image_id"], ann["category_id"], tuple(np.round(ann["bbox"], 1))), None)
        cat = categories.get(ann["category_id"])
        if result is None or cat is None or not ann.get("num_keypoints"):
            continue
        matches.append(Match(result, np.asarray(ann["keypoints"], np.float64).reshape(-1, 3),
                             np.asarray(result["keypoints"], np.float64).reshape(-1, 3),
                             np.asarray(cat["kpt_sigmas"], np.float64), float(ann["area"]), cat["name"], cat["id"]))
    return matches


def error_budget(gt: dict[str, Any], results: list[dict[str, Any]], matches: list[Match]) -> list[tuple[str, float]]:
    """Keypoint AP of ``results`` as they are and with one kind of error of the matched ones removed."""
    matched = {id(m.result) for m in matches}
    rest = [r for r in results if id(r) not in matched]

    def ap(edit: Callable[[Match], dict[str, Any]]) -> float:
        return evaluate(gt, rest + [edit(m) for m in matches], ("keypoints",))["keypoints"]["AP"]

    def moved(m: Match, which: np.ndarray, factor: float) -> dict[str, Any]:
        pred = m.pred.copy()
        pred[which, :2] = m.truth[which, :2] + (pred[which, :2] - m.truth[which, :2]) / factor
        return {**m.result, "keypoints": pred.ravel().tolist()}

    return [("as predicted", evaluate(gt, results, ("keypoints",))["keypoints"]["AP"]),
            ("scores = true OKS", ap(lambda m: {**m.result, "score": m.oks})),
            ("occluded keypoints exact", ap(lambda m: moved(m, m.truth[:, 2] == 1, np.inf))),
            ("visible errors / 1.5", ap(lambda m: moved(m, m.truth[:, 2] == 2, 1.5))),
            ("visible errors / 2", ap(lambda m: moved(m, m.truth[:, 2] == 2, 2.0)))]


def print_categories(matches: list[Match]) -> None:
    by_category: dict[str, list[Match]] = defaultdict(list)
    for m in matches:
        by_category[m.category].append(m)
    print(f"{'category':<22} {'n':>4} {'OKS':>6} {'>0.75':>6} {'occluded':>9} {'clear':>6}")
    for name, group in sorted(by_category.items(), key=lambda item: item[1][0].category_id):
        oks = np.array([m.oks for m in group])
        occluded = np.array([(m.truth[:, 2] == 1).any() for m in group])
        print(f"{name:<22} {len(group):>4} {oks.mean():>6.3f} {np.mean(oks > 0.75):>6.2f} "
              f"{mean(oks[occluded]):>9} {mean(oks[~occluded]):>6}")
        if name not in AXIS_CATEGORIES:
            continue
        ratios = [axis_ratio(m.truth) for m in group]
        for lo, hi in RATIO_BINS:
            inside = [o for o, r in zip(oks, ratios, strict=True)
                      if r is not None and lo <= r and (r < hi or hi == 1.0)]
            label = f"  axis ratio {lo:.2f}-{hi:.2f}"
            print(f"{label:<22} {len(inside):>4} {mean(inside):>6}")


def print_sizes(matches: list[Match]) -> None:
    print(f"\n{'sqrt(area) px':<22} {'n':>4} {'OKS':>6} {'>0.75':>6}")
    for lo, hi in SIZE_BINS:
        oks = [m.oks for m in matches if lo <= np.sqrt(m.area) < hi]
        share = f"{np.mean(np.array(oks) > 0.75):>6.2f}" if oks else f"{'-':>6}"
        print(f"{f'{lo}-{hi}':<22} {len(oks):>4} {mean(oks):>6} {share}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gt", required=True, help="COCO keypoint annotations")
    parser.add_argument("--results", required=True, help="keypoint results from the ground-truth boxes")
    args = parser.parse_args()
    gt, results = read_json(args.gt), read_json(args.results)
    matches = match_results(gt, results)
    print_categories(matches)
    print_sizes(matches)
    print(f"\n{'error budget':<26} {'keypoint AP':>11}")
    for name, ap in error_budget(gt, results, matches):
        print(f"{name:<26} {ap:>11.2f}")


if __name__ == "__main__":
    main()
