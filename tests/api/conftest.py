"""Tiny randomly initialised models saved as checkpoints in the engine's format (weights under ``"model"`` and a
model spec), and a synthetic image they run on."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from densevision.data.keypoints import KeypointLayout
from densevision.data.synthetic import CATEGORIES, CLASSES, generate_split, keypoint_categories
from densevision.detection.mask_rcnn import build_mask_rcnn
from densevision.engine.checkpoint import MODEL_SPEC, model_spec
from densevision.io import save_torch
from densevision.pose.model import build_pose_model, pose_model_spec
from densevision.refine.network import build_refine_net, refine_net_spec
from densevision.segmentation.model import build_segmenter, segmenter_spec

TINY_DETECTOR = {"fpn_channels": 16, "mask_head_channels": 8, "box_head_dim": 16, "rois_per_image": 16,
                 "rpn_pre_nms_top_n_test": 50, "rpn_post_nms_top_n_test": 20, "box_detections_per_img": 8,
                 "box_score_thresh": 0.0, "min_size": 64, "max_size": 64}
TINY_HRNET = {"width": 4, "stage1_blocks": 1, "stage1_planes": 8, "num_modules": (1, 1, 1), "num_blocks": (1, 1, 1)}
SIZE = 96


@pytest.fixture(scope="session")
def synth(tmp_path_factory) -> dict[str, Path]:
    """Two synthetic 96² validation images with labels: ``folder`` (one image in it), ``image`` (that file),
    ``ann`` (the split's COCO json), ``root`` (the data root)."""
    root = tmp_path_factory.mktemp("api_synth")
    ann = generate_split(root, "val", 2, size=SIZE, seed=5, labels=True, progress=False)
    folder = root / "one"
    folder.mkdir()
    image = folder / "000001.png"
    image.write_bytes((root / "val" / "000001.png").read_bytes())
    return {"root": root, "folder": folder, "image": image, "ann": ann}


def _save(path: Path, model: torch.nn.Module, spec: dict) -> Path:
    save_torch(path, {"model": model.state_dict(), MODEL_SPEC: spec})
    return path


@pytest.fixture(scope="session")
def checkpoints(tmp_path_factory) -> dict[str, Path]:
    """``{"detector", "keypoint_detector", "refiner", "segmenter", "pose", "pose_dark"}`` checkpoint files of
    tiny random networks (``keypoint_detector``: a Keypoint R-CNN of the synthetic categories with keypoints;
    ``pose_dark``: the pose network with DARK decoding and unbiased targets in its model spec)."""
    root = tmp_path_factory.mktemp("api_checkpoints")
    torch.manual_seed(0)
    detector = build_mask_rcnn("timm:mobilenetv3_small_050", num_classes=len(CATEGORIES), **TINY_DETECTOR)
    categories = [{"id": c["id"], "name": c["name"]} for c in CATEGORIES]
    refiner = build_refine_net(input_size=32, patch_size=16, stem_width=8, **TINY_HRNET)
    segmenter = build_segmenter("hrnet_w18_small", "fpn", len(CLASSES), classes=CLASSES, channels=16,
                                fpn_channels=16, backbone_kwargs={"width": 8})
    layout = KeypointLayout(keypoint_categories())
    keypoint_detector = build_mask_rcnn("timm:mobilenetv3_small_050", num_classes=len(CATEGORIES),
                                        detector="keypoint_rcnn", num_keypoints=layout.num_joints, **TINY_DETECTOR)
    pose_config = {"input_size": (32, 24), "model": "pose_hrnet_w32", "backbone": None, "head": "simple",
                   "overrides": dict(TINY_HRNET)}
    pose = build_pose_model(num_joints=layout.num_joints, **pose_config)
    torch.nn.init.constant_(pose.network.final_layer.bias, 1.0)  # heatmap maxima above 0.2: non-zero scores
    return {
        "detector": _save(root / "detector.pt", detector,
                          model_spec("mask_rcnn", detector.config, {"categories": categories})),
        "keypoint_detector": _save(root / "keypoint_detector.pt", keypoint_detector, model_spec(
            "mask_rcnn", keypoint_detector.config, {"categories": categories, "keypoints": layout.to_meta()})),
        "refiner": _save(root / "refiner.pt", refiner, refine_net_spec(refiner)),
        "segmenter": _save(root / "segmenter.pt", segmenter, segmenter_spec(segmenter)),
        "pose": _save(root / "pose.pt", pose, pose_model_spec(pose_config, num_joints=layout.num_joints,
                                                               meta={"categories": layout.to_meta()})),
        "pose_dark": _save(root / "pose_dark.pt", pose, pose_model_spec(
            pose_config, num_joints=layout.num_joints,
            meta={"categories": layout.to_meta(), "decode": "dark", "unbiased": True})),
    }
