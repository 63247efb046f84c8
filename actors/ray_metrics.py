"""The daemon's own counters through Ray's metrics API, so they show in the Ray
dashboard (Metrics view) next to Ray's. Outside a Ray worker (unit tests) they are
no-ops."""

from __future__ import annotations

from typing import Any


class _NoOp:
    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        pass

    def set(self, value: float, tags: dict[str, str] | None = None) -> None:
        pass


def _in_ray_worker() -> bool:
    try:
        import ray

        return bool(ray.is_initialized()) and ray.get_runtime_context().get_actor_id() is not None
    except Exception:
        return False


class _Counter:
    """Ray's Counter refuses inc(0); a tick with nothing to count is normal here."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def inc(self, value: float = 1.0, tags: dict[str, str] | None = None) -> None:
        if value > 0:
            self.inner.inc(value, tags=tags)


def counter(name: str, description: str, tag_keys: tuple[str, ...] = ()) -> Any:
    if not _in_ray_worker():
        return _NoOp()
    from ray.util.metrics import Counter

    return _Counter(Counter(name, description=description, tag_keys=tag_keys))


def gauge(name: str, description: str, tag_keys: tuple[str, ...] = ()) -> Any:
    if not _in_ray_worker():
        return _NoOp()
    from ray.util.metrics import Gauge

    return Gauge(name, description=description, tag_keys=tag_keys)


def is_live(metric: Any) -> bool:
    return not isinstance(metric, _NoOp)
