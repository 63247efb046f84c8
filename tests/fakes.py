"""In-process stand-ins for Ray handles, so the actors' logic runs without a cluster.

`handle.method.remote(*args)` runs the method at once and returns a FakeRef; a FakeRef
is awaitable, and, passed as an argument to another call, arrives as its value (as an
ObjectRef does in Ray)."""

from __future__ import annotations

import asyncio
import inspect
from typing import Any


class FakeRef:
    def __init__(self, value: Any = None, error: BaseException | None = None) -> None:
        self.value, self.error = value, error

    def __await__(self):
        yield from asyncio.sleep(0).__await__()
        if self.error is not None:
            raise self.error
        return self.value


def _unwrap(value: Any) -> Any:
    if isinstance(value, FakeRef):
        if value.error is not None:
            raise value.error
        return value.value
    return value


class _Method:
    def __init__(self, target: Any, name: str) -> None:
        self.target, self.name = target, name

    def options(self, num_returns: int = 1, **_: Any) -> _Method:
        """As Ray's: num_returns > 1 splits the method's tuple into that many refs."""
        method = _Method(self.target, self.name)
        method.num_returns = num_returns
        return method

    num_returns = 1

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        if self.num_returns > 1:
            ref = self._call(*args, **kwargs)
            if ref.error is not None:
                return tuple(FakeRef(error=ref.error) for _ in range(self.num_returns))
            return tuple(FakeRef(v) for v in ref.value)
        return self._call(*args, **kwargs)

    def _call(self, *args: Any, **kwargs: Any) -> Any:
        fn = getattr(self.target, self.name)
        args = tuple(_unwrap(a) for a in args)
        kwargs = {k: _unwrap(v) for k, v in kwargs.items()}
        if inspect.iscoroutinefunction(fn):
            return asyncio.ensure_future(fn(*args, **kwargs))
        try:
            return FakeRef(fn(*args, **kwargs))
        except Exception as exc:
            return FakeRef(error=exc)


class FakeHandle:
    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> _Method:
        return _Method(self._target, name)


class FakeRuntime:
    """Builds the actor objects in-process; mirrors actors.remote.RayRuntime."""

    def __init__(self, settings: dict[str, Any], store: Any) -> None:
        from modelmon_daemon.actors.application import ApplicationActor
        from modelmon_daemon.actors.writer import WriterActor

        self.settings, self.store = settings, store
        self.streams: dict[str, Any] = {}
        self.stream_indexes: dict[str, int | None] = {}
        self._writer = FakeHandle(WriterActor(settings, store=store))
        self._apps = [FakeHandle(ApplicationActor(i, settings)) for i in range(2)]

    def stream_actor(self, name: str, index: int | None = None) -> FakeHandle:
        from modelmon_daemon.actors.stream import StreamActor

        self.stream_indexes[name] = index  # the placement slot asked for (round robin)
        if name not in self.streams:
            self.streams[name] = StreamActor(name, self.settings, store=self.store)
        return FakeHandle(self.streams[name])

    def writer(self) -> FakeHandle:
        return self._writer

    def application_actors(self) -> list[FakeHandle]:
        return self._apps
