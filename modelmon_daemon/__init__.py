"""modelmon-daemon: model monitoring on Ray with exact MLRun-parity drift."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def connect(target: Any = "./modelmon-data") -> Any:
    """Live handles to a running daemon's actors (see modelmon_daemon.handles)."""
    from modelmon_daemon.handles import connect as _connect

    return _connect(target)


def __getattr__(name: str) -> Any:
    if name in ("Client", "AsyncClient"):
        from modelmon_daemon import client

        return getattr(client, name)
    raise AttributeError(name)


__all__ = ["AsyncClient", "Client", "__version__", "connect"]
