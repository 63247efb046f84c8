"""The files of the top-level `config/` folder (default config, alert templates, Grafana
dashboards). The wheel ships that folder as the package `modelmon_daemon.defaults`; a
source checkout reads it in place."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parents[2] / "config"


def defaults_dir() -> Path:
    """Where the packaged config folder is, installed or in a checkout."""
    try:
        # a folder without __init__.py is a namespace package: files() gives a
        # MultiplexedPath, whose joined children are real paths
        path = Path(str(resources.files("modelmon_daemon.defaults") / "modelmon.toml")).parent
    except (ModuleNotFoundError, TypeError, ValueError):
        return _CHECKOUT
    return path if (path / "modelmon.toml").exists() else _CHECKOUT


def default_file(name: str) -> Path:
    return defaults_dir() / name
