"""ONNX export of trained pose networks (pose HRNet, ViT with the ViTPose head): crops -> heatmaps with a dynamic
batch axis, equal to PyTorch under ONNX Runtime, with the decoding information as metadata; the CLI's flags."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from densevision.cli import main
from densevision.data.keypoints import KeypointLayout
from densevision.data.synthetic import keypoint_categories
from densevision.engine.checkpoint import MODEL_SPEC
from densevision.export import POSE_METADATA, export_pose
from densevision.io import save_torch
from densevision.pose.model import build_pose_model, load_pose_model, pose_model_spec
from tests.pose.conftest import TINY_POSE_HRNET

NETWORKS = {
    "pose_hrnet": {"input_size": [32, 24], "model": "pose_hrnet_w32", "backbone": None, "head": "simple",
                   "overrides": TINY_POSE_HRNET},
    "vitpose": {"input_size": [32, 48], "model": None, "backbone": "vit_tiny_patch16_224", "head": "vitpose",
                "overrides": {"embed_dim": 32, "depth": 1, "num_heads": 2, "img_size": 64}},
}


def _checkpoint(path: Path, config: dict) -> Path:
    """A pose checkpoint whose weights are perturbed away from the initialisation (heatmaps of order 1)."""
    layout = KeypointLayout(keypoint_categories())
    torch.manual_seed(0)
    model = build_pose_model(num_joints=layout.num_joints, **config)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
    meta = {"categories": layout.to_meta(), "decode": "dark", "unbiased": True}
    save_torch(path, {"model": model.state_dict(),
                      MODEL_SPEC: pose_model_spec(config, num_joints=layout.num_joints, meta=meta)})
    return path


@pytest.mark.parametrize("name", list(NETWORKS))
def test_exported_heatmaps_equal_pytorch_at_any_batch(tmp_path, name) -> None:
    checkpoint = _checkpoint(tmp_path / "pose.pt", NETWORKS[name])
    report = export_pose(checkpoint, tmp_path / "pose.onnx")
    assert report.output_names == ["heatmaps"] and [c["input_shape"][0] for c in report.checked] == [2, 3]
    model, _ = load_pose_model(checkpoint)
    h, w = model.input_size
    proto = onnx.load(str(tmp_path / "pose.onnx"))
    onnx.checker.check_model(proto)
    dims = proto.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [3, h, w]
    crops = torch.rand(4, 3, h, w)
    session = onnxruntime.InferenceSession(str(tmp_path / "pose.onnx"), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": crops.numpy()})
    with torch.no_grad():
        expected = model(crops).numpy()
    assert got.shape == (4, 20, h // 4, w // 4) and expected.std() > 0.02
    assert np.abs(got - expected).max() < 1e-4
    info = json.loads({p.key: p.value for p in proto.metadata_props}[POSE_METADATA])
    assert info["input_size"] == [h, w] and info["heatmap_stride"] == 4
    assert (info["decode"], info["unbiased"]) == ("dark", True)
    assert KeypointLayout(info["categories"]).flip_index == KeypointLayout(keypoint_categories()).flip_index


def test_cli(tmp_path, capsys) -> None:
    checkpoint = _checkpoint(tmp_path / "pose.pt", NETWORKS["pose_hrnet"])
    out = tmp_path / "pose.onnx"
    assert main(["export-onnx", str(checkpoint), str(out), "--pose"]) == 0
    printed = capsys.readouterr().out
    assert "pose network (20 joints)" in printed and "32x24 crops" in printed and printed.count("max abs diff") == 2
    assert main(["export-onnx", str(checkpoint), str(tmp_path / "x.onnx"), "--pose", "--size", "64", "64"]) == 2
    assert main(["export-onnx", str(checkpoint), str(checkpoint), "--pose"]) == 2
    err = capsys.readouterr().err
    assert "--pose takes its weights, joints and crop size from NAME; drop --size" in err and "is the input" in err
    assert not (tmp_path / "x.onnx").exists()
