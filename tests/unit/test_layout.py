"""The package is laid out along the pipeline and imports point one way: a module may
import its own layer and the layers below it, never one above (lazy imports included)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# lowest first; a layer imports only layers before it (and itself)
LAYERS = [
    "core",
    "analytics",
    "applications",
    "alerts",
    "storage",
    "ingest",
    "config",
    "actors",
    "server",
    "client",
    "integrations",
    "handles",
    "evaluate",
    "cli",
]


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "modelmon_daemon" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in LAYERS else None


def _source_files() -> list[tuple[str, Path]]:
    files = [("actors", p) for p in (ROOT / "actors").glob("*.py")]
    for path in (ROOT / "modelmon_daemon").rglob("*.py"):
        layer = _layer(".".join(path.relative_to(ROOT).with_suffix("").parts))
        if layer is not None:
            files.append((layer, path))
    return files


def _imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            names.append(node.module)
            names.extend(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
    return names


def test_every_layer_has_modules() -> None:
    found = {layer for layer, _ in _source_files()}
    assert found == set(LAYERS)


def test_imports_point_down_the_pipeline() -> None:
    rank = {layer: i for i, layer in enumerate(LAYERS)}
    upward = []
    for layer, path in _source_files():
        for name in _imported(path):
            target = _layer(name)
            if target is not None and rank[target] > rank[layer]:
                upward.append(f"{path.relative_to(ROOT)} ({layer}) imports {name} ({target})")
    assert upward == []


def test_actors_ship_inside_the_package() -> None:
    import modelmon_daemon.actors.controller as controller

    assert Path(controller.__file__).resolve().parent == ROOT / "actors"


def test_every_package_folder_is_listed_for_the_wheel() -> None:
    """pyproject lists packages one by one: a folder left out is missing from the wheel."""
    import tomllib

    listed = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]
    )
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "modelmon_daemon").rglob("__init__.py")
    }
    assert found <= listed, sorted(found - listed)
