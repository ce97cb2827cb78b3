"""The keypoint AP a perfect network would reach: the training targets themselves decoded and evaluated.

For each crop size, target encoding (the official rounded Gaussian peak, or DARK's unbiased one) and decoder
(quarter-pixel rule, DARK), the heatmap targets of the ground-truth boxes are decoded back to image coordinates
and scored with pycocotools' keypoint AP: what heatmap quantisation alone costs, before any learning.

    python benchmarks/pose_target_ceiling.py --ann data/sem/annotations/instances_val.json --images data/sem/val
"""

from __future__ import annotations

import argparse

import torch

from densevision.data.jsonio import read_json
from densevision.data.keypoints import TopDownDataset, load_keypoint_instances
from densevision.evaluation.coco import evaluate
from densevision.pose.predict import decode_dark, decode_heatmaps, keypoint_result

DECODERS = {"quarter": decode_heatmaps, "dark": decode_dark}


def ceiling(ann: str, images: str, size: int, target: str, decoder: str) -> dict[str, float]:
    """Keypoint AP / AP50 / AP75 of the decoded ``size``² targets of every ground-truth box of ``ann``."""
    instances, layout = load_keypoint_instances(ann, images, labelled_only=False)
    dataset = TopDownDataset(instances, layout, input_size=(size, size), unbiased=target == "unbiased")
    results = []
    for i in range(len(dataset)):
        _, heatmaps, _, index = dataset[i]
        coords, maxvals = DECODERS[decoder](heatmaps[None])
        results.append(keypoint_result(dataset, index, coords[0].numpy(), maxvals[0].numpy()))
    metrics = evaluate(read_json(ann), results, ("keypoints",))["keypoints"]
    return {k: round(metrics[k], 2) for k in ("AP", "AP50", "AP75")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ann", required=True)
    parser.add_argument("--images", required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 192, 256])
    args = parser.parse_args()
    torch.set_num_threads(1)
    for size in args.sizes:
        for target, decoder in (("rounded", "quarter"), ("rounded", "dark"), ("unbiased", "quarter"),
                                ("unbiased", "dark")):
            print(f"{size}² {target:8s} targets, {decoder:7s} decoding:", ceiling(args.ann, args.images, size,
                                                                                  target, decoder), flush=True)


if __name__ == "__main__":
    main()
