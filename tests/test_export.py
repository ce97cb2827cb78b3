"""ONNX export of every family of the zoo, checked with ONNX Runtime against PyTorch (dynamic batch; dynamic
height and width for feature extractors, checked at a size not seen while tracing), and the CLI."""

from __future__ import annotations

import onnx
import pytest
import torch

from densevision.cli import main
from densevision.errors import DenseVisionError
from densevision.export import check_with_onnxruntime, export_model_bytes, export_onnx
from densevision.models import create_model, list_models, model_family

# Small architecture overrides per family; a family missing here is tested with its smallest variant.
SMALL = {
    "asmlp": dict(embed_dim=8, depths=(1, 2, 1, 1)),
    "cyclemlp": dict(layers=(1, 1, 2, 1), embed_dims=(8, 16, 24, 32), mlp_ratios=(2, 2, 2, 2)),
    "hrnet": dict(width=4, stage1_blocks=1, stage1_planes=8, num_modules=(1, 2, 1), num_blocks=(1, 1, 1)),
    "swin": dict(embed_dim=16, depths=(1, 1, 2, 1), num_heads=(1, 2, 2, 4)),
    "vit": dict(embed_dim=32, depth=2, num_heads=2, img_size=64),
}


def _param_count(name: str) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name).parameters())


def one_per_family() -> list[tuple[str, dict]]:
    """The smallest variant of each family, with the family's small overrides when known."""
    families: dict[str, list[str]] = {}
    for name in list_models():
        families.setdefault(model_family(name), []).append(name)
    return [(min(names, key=_param_count), SMALL.get(family, {})) for family, names in sorted(families.items())]


CASES = one_per_family()


def trained_checkpoint(path, name: str, features: bool, overrides: dict):
    """A checkpoint whose parameters are perturbed away from the initialisation and whose BatchNorm statistics
    are calibrated on random images (as after training), so activations keep a realistic scale."""
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, features_only=features, **overrides)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.05)
        norms = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
        for bn in norms:
            bn.momentum = None  # cumulative average over the calibration batches
        if norms:
            model.train()
            size = (64, 96) if features else tuple(model.pretrained_cfg["input_size"][1:])
            for _ in range(2):
                model(torch.rand(4, 3, *size))
    torch.save(model.state_dict(), path)
    return path


@pytest.mark.parametrize("features", [False, True], ids=["classifier", "features"])
@pytest.mark.parametrize(("name", "overrides"), CASES, ids=[name for name, _ in CASES])
def test_export_matches_pytorch(tmp_path, name: str, overrides: dict, features: bool) -> None:
    ckpt = trained_checkpoint(tmp_path / "weights.pth", name, features, overrides)
    out = tmp_path / "model.onnx"
    size = (64, 96) if features else None  # classifiers at their native size
    report = export_onnx(name, out, features=features, size=size, checkpoint=ckpt, num_classes=10, **overrides)
    assert 0.0 <= report.max_abs_diff < 1e-2  # export_onnx raised if any output exceeded 1e-4 × its scale
    graph = onnx.load(str(out)).graph
    onnx.checker.check_model(onnx.load(str(out)))
    dims = graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 3
    shapes = [c["input_shape"] for c in report.checked]
    if features:
        assert dims[2].dim_param and dims[3].dim_param and shapes == [[2, 3, 64, 96], [1, 3, 93, 144]]
        assert len(graph.output) == 4
    else:
        native = list(create_model(name, **overrides).pretrained_cfg["input_size"])
        assert [d.dim_value for d in dims[1:]] == native and shapes == [[2, *native]]
        assert [d.dim_value for d in graph.output[0].type.tensor_type.shape.dim][1:] == [10]


def test_mismatch_is_detected_and_nothing_is_written(tmp_path) -> None:
    model = create_model("cyclemlp_b1", features_only=True, **SMALL["cyclemlp"]).eval()
    onnx_bytes, _ = export_model_bytes(model, features=True, size=(32, 32))
    with torch.no_grad():
        model.norm6.bias.add_(1e-3)
    with pytest.raises(DenseVisionError, match="feature3 differs from PyTorch by 0.001"):
        check_with_onnxruntime(onnx_bytes, model, [torch.randn(1, 3, 40, 36)], label="cyclemlp_b1")
    out = tmp_path / "never.onnx"
    with pytest.raises(DenseVisionError, match="differs from PyTorch"):
        export_onnx("asmlp_tiny", out, size=(32, 32), atol=-1.0, **SMALL["asmlp"])
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli(tmp_path, capsys) -> None:
    out = tmp_path / "b1.onnx"
    assert main(["export-onnx", "cyclemlp_b1", str(out), "--features", "--size", "64", "64", "--opset", "18"]) == 0
    assert out.exists() and onnx.load(str(out)).opset_import[0].version == 18
    assert "max abs diff" in capsys.readouterr().out
    assert main(["export-onnx", "cyclemlp_b9", str(tmp_path / "x.onnx")]) == 2
    assert main(["export-onnx", "cyclemlp_b1", str(tmp_path / "x.onnx"), "--opset", "99"]) == 2
    assert main(["export-onnx", "cyclemlp_b1", str(tmp_path / "x.onnx"), "--checkpoint", str(tmp_path / "no.pth")]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'cyclemlp_b9'" in err and "opset 99" in err and "no.pth" in err
    assert not (tmp_path / "x.onnx").exists()
