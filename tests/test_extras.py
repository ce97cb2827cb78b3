"""Optional packages missing (simulated with ``sys.modules[name] = None``): one line naming the pip extra."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from densevision.cli import main
from densevision.errors import DenseVisionError
from densevision.extras import EXTRAS, MissingExtraError, require


def test_require_names_the_extra(monkeypatch):
    assert require("json", "a test").dumps([]) == "[]"
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(MissingExtraError) as info:
        require("matplotlib.figure", "the plot")
    assert str(info.value) == 'the plot needs matplotlib, which is not installed: pip install "densevision[plots]"'
    assert isinstance(info.value, DenseVisionError)


def test_every_extra_is_declared_in_pyproject():
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    for package, extra in EXTRAS.items():
        assert any(req.startswith(package) for req in extras[extra]), (package, extra)
        assert not any(req.startswith(package) for req in project["dependencies"]), package
    assert extras["all"] == ["densevision[plots,tensorboard,onnx]"]


@pytest.mark.parametrize("missing", ["onnx", "onnxruntime"])
def test_export_onnx_without_the_extra_names_it(monkeypatch, capsys, tmp_path, missing):
    monkeypatch.setitem(sys.modules, missing, None)
    out = tmp_path / "m.onnx"
    assert main(["export-onnx", "hrnet_w18_small", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.endswith(f'needs {missing}, which is not installed: pip install "densevision[onnx]"')
    assert len(err.splitlines()) == 1 and not out.exists()


def test_figures_without_matplotlib_name_the_plots_extra(monkeypatch, tmp_path):
    from densevision.demo import run_demo
    from densevision.report import write_demo_figures, write_semantic_figure
    from densevision.viz import save_figure

    monkeypatch.setitem(sys.modules, "matplotlib", None)
    calls = [
        lambda: run_demo(tmp_path / "demo", quick=True, device="cpu", progress=False),
        lambda: write_demo_figures(tmp_path / "f.png", {"categories": [], "images": [], "annotations": []},
                                   tmp_path, [], [], []),
        lambda: write_semantic_figure(tmp_path / "s.png", []),
        lambda: save_figure(tmp_path / "g.png", [("image", np.zeros((4, 4, 3), np.uint8))]),
    ]
    for call in calls:
        with pytest.raises(MissingExtraError, match=r'pip install "densevision\[plots\]"'):
            call()
    assert list(tmp_path.iterdir()) == []  # the demo stops before any work
