"""The layering the project stands on: each package imports only the layers below it.

core ← renderers, models ← pipeline ← webui / app; evaluation and training sit beside the product and the product
never imports them. Checked on the source (every ``import`` statement, including ones inside functions), so a lazy
import cannot sneak a dependency upward.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT_PACKAGES = {"core", "renderers", "models", "pipeline", "webui", "app", "evaluation", "training", "scripts"}
ALLOWED = {
    "core": {"core"},
    "renderers": {"core", "renderers"},
    "models": {"core", "models"},
    "pipeline": {"core", "renderers", "models", "pipeline"},
    "webui": {"core", "renderers", "models", "pipeline", "webui"},
    "app": {"core", "renderers", "models", "pipeline", "webui", "app"},
}


def _imported_packages(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT_PACKAGES


def _sources(layer: str) -> list[Path]:
    if layer == "app":
        return [ROOT / "app.py"]
    return sorted((ROOT / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_imports_only_layers_below(layer):
    files = _sources(layer)
    if layer != "webui":
        assert files, f"no sources found for {layer}"
    wrong = {
        str(path.relative_to(ROOT)): sorted(_imported_packages(path) - ALLOWED[layer])
        for path in files
        if _imported_packages(path) - ALLOWED[layer]
    }
    assert not wrong, f"{layer} may import only {sorted(ALLOWED[layer])}; these import more: {wrong}"


def _edits_sys_path(path: Path) -> bool:
    text = path.read_text(errors="replace")
    return any(f"sys.path.{verb}(" in text for verb in ("insert", "append", "extend"))


def test_no_sys_path_edits():
    offenders = [
        str(path.relative_to(ROOT))
        for path in ROOT.rglob("*.py")
        if ".git" not in path.parts and path != Path(__file__).resolve() and _edits_sys_path(path)
    ]
    assert not offenders, f"edit sys.path nowhere (the project is installed with pip install -e .): {offenders}"
