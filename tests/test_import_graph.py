"""The package layering, read from every import statement (module level and inside functions) of densevision."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "densevision"
TASKS = {"detection", "refine", "segmentation", "pose"}
FLOORS = {"layers", "data", "evaluation", "models", "engine"}
ABOVE_FLOORS = TASKS | {"api", "demo", "bench", "bench_segmentation", "export", "pipelines", "cli"}


def _package(module: str) -> str | None:
    """``densevision.X.y`` -> ``X``; None outside densevision or for the top-level package itself."""
    parts = module.split(".")
    return parts[1] if parts[0] == "densevision" and len(parts) > 1 else None


def _imports(path: Path) -> set[str]:
    """Every densevision module a file imports, relative imports resolved."""
    module = ".".join(path.relative_to(ROOT.parent).with_suffix("").parts)
    if path.name == "__init__.py":
        module = module.rsplit(".", 1)[0] + ".__init__"
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: -node.level]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {m for m in found if m.startswith("densevision")}


def _graph() -> dict[str, set[str]]:
    """``{importing package or top-level module: packages it imports}``."""
    graph: dict[str, set[str]] = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT).parts
        owner = rel[0].removesuffix(".py")
        imported = {p for p in map(_package, _imports(path)) if p is not None and p != owner}
        graph.setdefault(owner, set()).update(imported)
    return graph


def test_parser_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    pkg = tmp_path / "densevision" / "refine"
    pkg.mkdir(parents=True)
    source = "def f():\n    from densevision.detection import predict\n    from ..evaluation import coco\n"
    (pkg / "x.py").write_text(source)
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path / "densevision")
    assert _graph()["refine"] == {"detection", "evaluation"}


GRAPH = _graph()


@pytest.mark.parametrize("task", sorted(TASKS & set(GRAPH)))
def test_task_packages_never_import_each_other(task):
    assert not (GRAPH[task] & (TASKS - {task})), f"{task} imports {sorted(GRAPH[task] & TASKS)}"


def test_refine_does_not_import_evaluation():
    assert "evaluation" not in GRAPH["refine"]


@pytest.mark.parametrize("floor", sorted(FLOORS & set(GRAPH)))
def test_shared_floors_never_import_task_packages_or_the_layers_above(floor):
    assert not (GRAPH[floor] & ABOVE_FLOORS), f"{floor} imports {sorted(GRAPH[floor] & ABOVE_FLOORS)}"


@pytest.mark.parametrize("task", sorted(TASKS & set(GRAPH)))
def test_task_packages_never_import_the_packages_composing_them(task):
    above = GRAPH[task] & (ABOVE_FLOORS - TASKS)
    assert not above, f"{task} imports {sorted(above)}"
