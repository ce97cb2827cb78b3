"""Choose which detections BPR refines on a tuning split, then check the choice once on the demo's validation split.

The demo's detector (shipped weights, run at ``DemoRecipe.detector_test_input``) predicts a synthetic split made
with another seed than the demo's (seed 1, as ``benchmarks/demo_test_size.py`` uses; no image is shared with the
demo's training or validation split, which is checked); the shipped refiner predicts every boundary patch once.
From those patch probabilities each candidate rule of :mod:`densevision.refine.selection` is applied without
running the network again:

* ``min_area``: only instances whose coarse mask covers at least that many pixels are refined;
* ``max_outside``: patches lying more than that share outside their instance's (coarse mask) box are dropped;
* ``margin``: a covered pixel keeps its coarse value where the averaged probability is within it of 0.5;

all with the detector's boxes and scores kept, plus the plain rule (every instance refined, boxes recomputed
from the refined masks: what ``bpr refine`` did before this choice). Each is scored with COCO bbox / segm AP,
segm AP50, segm APs and Boundary AP. The chosen rule maximises segm AP + Boundary AP among those lowering none of
the five against the coarse results; it is then evaluated once on the demo's validation split (seed 0, 40
images), next to the coarse results, ``refine_results`` itself with the plain rule, and all instances refined
with boxes kept.

    python benchmarks/bpr_refine_rule.py --images 100 --cache runs/bpr_rule
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from pycocotools import mask as mask_utils

from densevision.data.images import record_from_entry
from densevision.data.jsonio import read_json
from densevision.data.masks import decode_masks, encode_masks
from densevision.demo import DemoRecipe, prepare_split, shipped_weights
from densevision.detection.predict import predict
from densevision.evaluation import CocoEvaluator
from densevision.refine.config import RefineRuleConfig
from densevision.refine.network import RefineNet, load_refine_net
from densevision.refine.patches import mask_boxes, patch_chunks
from densevision.refine.pipeline import check_results, refine_results
from densevision.refine.selection import (
    keep_detection_boxes,
    merge_with_margin,
    patch_outside_fraction,
    select_instances,
    select_patches,
)

COLUMNS = (("bbox", "AP"), ("segm", "AP"), ("segm", "AP50"), ("segm", "APs"), ("boundary", "AP"))
HEADERS = ("bbox AP", "segm AP", "segm AP50", "segm APs", "Boundary AP")


@dataclass(frozen=True)
class Rule:
    """One candidate: which boxes, which instances, patches and pixels are refined."""

    boxes: str = "keep"
    min_area: int = 0
    max_outside: float = 1.0
    margin: float = 0.0

    @property
    def name(self) -> str:
        parts = [f"boxes {self.boxes}"]
        if self.min_area:
            side = round(self.min_area ** 0.5)
            parts.append(f"min_area {side}²" if side * side == self.min_area else f"min_area {self.min_area}")
        if self.max_outside < 1.0:
            parts.append(f"max_outside {self.max_outside:g}")
        if self.margin:
            parts.append(f"margin {self.margin:g}")
        return ", ".join(parts)


@dataclass
class Split:
    """A split with its coarse detections and every boundary patch's refiner probabilities."""

    name: str
    gt: dict[str, Any]
    images: Path
    coarse: list[dict[str, Any]]
    patches: dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]  # image id -> (boxes, instance, probs)


def _by_image(results: list[dict[str, Any]]) -> dict[int, list[int]]:
    positions: dict[int, list[int]] = {}
    for position, r in enumerate(results):
        positions.setdefault(r["image_id"], []).append(position)
    return positions


def predict_patches(gt: dict[str, Any], images: Path, coarse: list[dict[str, Any]], model: RefineNet,
                    nms_iou: float, batch_size: int) -> dict[int, tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """The patches ``refine_results`` proposes for each image and the refiner's probabilities on them."""
    infos = {img["id"]: img for img in gt["images"]}
    checked = check_results(coarse, gt["images"])
    size = model.patch_size
    items = ((record_from_entry(infos[image_id], images, "ground truth"), positions,
              [checked[p]["segmentation"] for p in positions]) for image_id, positions in _by_image(checked).items())
    out = {}
    for c in patch_chunks(items, patch_size=size, nms_iou=nms_iou, chunk=len(checked) + 1):  # one chunk an image
        probs = torch.empty((len(c.boxes), size, size))
        for start in range(0, len(c.boxes), batch_size):
            end = start + batch_size
            probs[start:end] = model.predict(c.images[start:end].float().div_(255.0), c.coarse[start:end])
        out[c.image_id] = (c.boxes, c.instance, probs)
    return out


def apply_rule(split: Split, rule: Rule) -> tuple[list[dict[str, Any]], float]:
    """The split's refined results under ``rule``, in the order of its coarse results, and the share of the
    proposed patches the rule sends through the network."""
    infos = {img["id"]: img for img in split.gt["images"]}
    checked = check_results(split.coarse, split.gt["images"])
    refined: list[dict[str, Any]] = [{} for _ in checked]
    proposed = used = 0
    for image_id, positions in _by_image(checked).items():
        info = infos[image_id]
        masks = decode_masks([checked[p]["segmentation"] for p in positions], info["height"], info["width"])
        boxes, instance, probs = split.patches[image_id]
        keep = torch.ones(len(boxes), dtype=torch.bool)
        if rule.max_outside < 1.0:
            keep = patch_outside_fraction(boxes, instance, mask_boxes(masks)) <= rule.max_outside
        boxes, instance, probs = boxes[keep], instance[keep], probs[keep]
        refine = select_instances(masks.sum((1, 2)), rule.min_area)
        probs = probs[refine[instance]]
        boxes, instance = select_patches(boxes, instance, refine)
        proposed, used = proposed + len(keep), used + len(boxes)
        rles = encode_masks(merge_with_margin(masks, probs, boxes, instance, rule.margin))
        for position, rle in zip(positions, rles, strict=True):
            r = checked[position]
            refined[position] = {"image_id": r["image_id"], "category_id": r["category_id"], "score": r["score"],
                                 "segmentation": rle}
    share = used / max(proposed, 1)
    if rule.boxes == "keep":
        return keep_detection_boxes(split.coarse, refined), share
    return [{**r, "bbox": mask_utils.toBbox(r["segmentation"]).tolist()} for r in refined], share


def load_split(name: str, work: Path, recipe: DemoRecipe, weights: dict[str, Path], batch_size: int) -> Split:
    """Generate (or reuse) the split under ``work``, run the detector and the refiner (or reuse their cache)."""
    ann, images = prepare_split(work / "data", "val", recipe.val_images, recipe, progress=False)
    gt = read_json(ann)
    cache = work / f"patches_in{recipe.detector_test_input}.pt"
    if cache.is_file():
        state = torch.load(cache, weights_only=False)
        return Split(name, gt, images, state["coarse"], state["patches"])
    start = time.perf_counter()
    coarse_path = work / f"coarse_in{recipe.detector_test_input}.json"
    predict(weights["detector"], images, coarse_path, ann=ann, device="cpu", input_size=recipe.detector_test_input,
            progress=False)
    coarse = read_json(coarse_path)
    detector_s = time.perf_counter() - start
    patches = predict_patches(gt, images, coarse, load_refine_net(weights["refiner"]).eval(), recipe.nms_iou,
                              batch_size)
    print(f"{name}: {len(gt['images'])} images, {len(coarse)} detections, "
          f"{sum(len(p[0]) for p in patches.values())} patches; detector {detector_s:.0f} s, "
          f"refiner {time.perf_counter() - start - detector_s:.0f} s", flush=True)
    torch.save({"coarse": coarse, "patches": patches}, cache)
    return Split(name, gt, images, coarse, patches)


def _image_hashes(split: Split) -> set[str]:
    return {hashlib.sha256((split.images / img["file_name"]).read_bytes()).hexdigest() for img in split.gt["images"]}


def _row(metrics: dict[str, Any]) -> list[float]:
    return [metrics[t][k] for t, k in COLUMNS]


class Table:
    """Rows printed as they come: the five metrics, their segm + Boundary sum, whether none is below the coarse
    row's, and the share of patches the network sees."""

    def __init__(self, title: str, names: list[str], coarse: list[float]) -> None:
        self.width, self.coarse = max(map(len, names)), coarse
        print(f"\n{title}\n{'':{self.width}} " + " ".join(f"{h:>11}" for h in HEADERS)
              + f" {'segm+Bnd':>9} {'no loss':>7} {'patches':>7}", flush=True)

    def row(self, name: str, values: list[float], share: float | None) -> None:
        ok = all(v >= c - 1e-9 for v, c in zip(values, self.coarse, strict=True))
        print(f"{name:{self.width}} " + " ".join(f"{v:>11.2f}" for v in values)
              + f" {values[1] + values[4]:>9.2f} {'yes' if ok else 'no':>7} "
              + (f"{share:>7.1%}" if share is not None else f"{'':>7}"), flush=True)


def candidates(min_areas: list[int], margins: list[float], max_outside: list[float]) -> list[Rule]:
    """Today's behaviour, then every (min_area, margin) pair and each max_outside alone, boxes kept."""
    rules = [Rule(boxes="from-mask")]
    rules += [Rule(min_area=a, margin=m) for a, m in itertools.product(min_areas, margins)]
    rules += [Rule(max_outside=f) for f in max_outside]
    return rules


def choose(rules: list[Rule], scores: list[list[float]], coarse: list[float]) -> Rule | None:
    """The rule with the highest segm AP + Boundary AP among those lowering no metric; ties go to the earlier."""
    best, best_value = None, float("-inf")
    for rule, values in zip(rules, scores, strict=True):
        if all(v >= c - 1e-9 for v, c in zip(values, coarse, strict=True)) and values[1] + values[4] > best_value:
            best, best_value = rule, values[1] + values[4]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100, help="images in the tuning split (default 100)")
    parser.add_argument("--seed", type=int, default=1, help="tuning split seed; the demo's splits use 0")
    parser.add_argument("--min-areas", type=int, nargs="+", default=[0, 16**2, 24**2, 32**2, 48**2, 64**2])
    parser.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.1, 0.2, 0.3, 0.4])
    parser.add_argument("--max-outside", type=float, nargs="+", default=[0.9, 0.8, 0.7, 0.6, 0.5])
    parser.add_argument("--batch-size", type=int, default=64, help="patches per refiner batch")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cache", help="keep the splits, detections and patch probabilities here and reuse them")
    parser.add_argument("--json", help="also write both tables here")
    args = parser.parse_args()
    demo = DemoRecipe()
    if args.seed == demo.seed:
        parser.error(f"--seed {args.seed} is the demo's own seed; the tuning split must differ from it")
    torch.set_num_threads(args.threads)
    weights = shipped_weights()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.cache or tmp)
        tuning = load_split("tuning", root / f"tuning_seed{args.seed}_n{args.images}",
                            replace(demo, seed=args.seed, val_images=args.images), weights, args.batch_size)
        validation = load_split("validation", root / "validation", demo, weights, args.batch_size)
        shared = _image_hashes(tuning) & _image_hashes(validation)
        if shared:
            raise SystemExit(f"{len(shared)} tuning images are also validation images")

        evaluator = CocoEvaluator(tuning.gt)
        coarse = _row(evaluator.evaluate(tuning.coarse))
        rules = candidates(args.min_areas, args.margins, args.max_outside)
        table = Table(f"tuning split (seed {args.seed}, {args.images} images, {len(tuning.coarse)} detections)",
                      ["coarse", *(r.name for r in rules)], coarse)
        table.row("coarse", coarse, None)
        scores, shares = [], []
        for rule in rules:
            results, share = apply_rule(tuning, rule)
            scores.append(_row(evaluator.evaluate(results)))
            shares.append(share)
            table.row(rule.name, scores[-1], share)
        chosen = choose(rules, scores, coarse)
        if chosen is None:
            raise SystemExit("no rule keeps every metric at or above the coarse results on the tuning split")
        print(f"\nchosen: {chosen.name}")

        evaluator = CocoEvaluator(validation.gt)
        model = load_refine_net(weights["refiner"])
        plain = RefineRuleConfig(boxes="from-mask", min_area=0, margin=0.0)  # what refine_results did before
        plain_refined = refine_results(validation.gt["images"], validation.images, validation.coarse, model,
                               nms_iou=demo.nms_iou, rule=plain, device="cpu", progress=False)
        replayed, _ = apply_rule(validation, Rule(boxes="from-mask"))
        same = sum(a["segmentation"] == b["segmentation"] for a, b in zip(plain_refined, replayed, strict=True))
        print(f"\nreplayed patches give refine_results' mask for {same} of {len(plain_refined)} validation detections")
        everything, _ = apply_rule(validation, Rule())
        selected, share = apply_rule(validation, chosen)
        val_rows = [("coarse", _row(evaluator.evaluate(validation.coarse)), None),
                    ("plain rule (refine_results)", _row(evaluator.evaluate(plain_refined)), 1.0),
                    ("boxes keep, all refined", _row(evaluator.evaluate(everything)), 1.0),
                    (f"chosen: {chosen.name}", _row(evaluator.evaluate(selected)), share)]
        table = Table(f"validation split (the demo's: seed {demo.seed}, {demo.val_images} images, "
                      f"{len(validation.coarse)} detections)", [name for name, _, _ in val_rows], val_rows[0][1])
        for row in val_rows:
            table.row(*row)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "headers": HEADERS, "chosen": asdict(chosen),
            "tuning": [{"rule": "coarse", "metrics": coarse}]
            + [{"rule": asdict(r), "metrics": s, "patches": p} for r, s, p in zip(rules, scores, shares, strict=True)],
            "validation": [{"rule": name, "metrics": values, "patches": p} for name, values, p in val_rows],
        }, indent=1))


if __name__ == "__main__":
    main()
