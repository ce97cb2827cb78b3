"""A trained segmenter exports to ONNX with dynamic height and width (UperNet's pyramid pooling included)."""

from __future__ import annotations

import onnx
import pytest
import torch

from densevision.engine.checkpoint import Checkpointer
from densevision.export import export_segmenter
from densevision.segmentation.model import build_segmenter, segmenter_spec


@pytest.mark.parametrize("head", ["upernet", "fpn"])
def test_export_at_dynamic_sizes_checked_with_onnxruntime(head, tmp_path):
    torch.manual_seed(0)
    model = build_segmenter("hrnet_w18_small", head, 3, channels=8, fpn_channels=8, aux_channels=8,
                            classes=["a", "b", "c"], backbone_kwargs={"width": 8})
    Checkpointer(tmp_path).save({"model": model.state_dict(), "model_spec": segmenter_spec(model)}, 1)
    report = export_segmenter(tmp_path, tmp_path / "seg.onnx", size=(64, 96))
    assert [c["input_shape"] for c in report.checked] == [[2, 3, 93, 144], [1, 3, 39, 109]]
    assert report.max_abs_diff < 1e-3
    graph = onnx.load(tmp_path / "seg.onnx").graph
    dims = [d.dim_param for d in graph.output[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[2:] == ["height0", "width0"]


def test_export_onnx_cli_exports_a_trained_segmenter(tmp_path, capsys):
    from densevision.cli import main

    torch.manual_seed(0)
    model = build_segmenter("hrnet_w18_small", "upernet", 2, channels=8, aux_channels=8, classes=["a", "b"],
                            backbone_kwargs={"width": 8})
    Checkpointer(tmp_path / "run").save({"model": model.state_dict(), "model_spec": segmenter_spec(model)}, 1)
    out = tmp_path / "seg.onnx"
    assert main(["export-onnx", str(tmp_path / "run"), str(out), "--segmenter", "--size", "64", "64"]) == 0
    printed = capsys.readouterr().out
    assert "segmenter:hrnet_w18_small+upernet" in printed and printed.count("onnxruntime vs PyTorch") == 2
    dims = [d.dim_param for d in onnx.load(out).graph.input[0].type.tensor_type.shape.dim]
    assert dims[0] == "batch" and dims[2:] == ["height", "width"]

    assert main(["export-onnx", str(tmp_path / "run"), str(tmp_path / "b.onnx"), "--segmenter",
                 "--num-classes", "5"]) == 2
    assert "drop --num-classes" in capsys.readouterr().err
