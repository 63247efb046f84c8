"""ControllerActor: routes endpoints to stream actors and, every tick, moves each closed
window through the application pool to the writer.

`update()` is idempotent: a window is forgotten by its stream actor only after the writer
committed it, so a tick that fails half-way is simply done again by the next one.
Endpoints are handled concurrently within a tick; the windows of one endpoint in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors import ray_metrics
from modelmon_daemon.config import Settings
from modelmon_daemon.records import AppOutput, WindowMeta
from modelmon_daemon.storage.lmdb_store import LmdbStore

log = logging.getLogger(__name__)


@dataclass
class TickReport:
    started: float = 0.0
    finished: float = 0.0
    windows: int = 0
    late_batches: int = 0
    results: int = 0
    failures: list[str] = field(default_factory=list)


class ActorPool:
    """Least-busy dispatch over the application actors."""

    def __init__(self, handles: list[Any]) -> None:
        self.handles = handles
        self.in_flight = [0] * len(handles)

    async def run(self, call: Callable[[Any], Any]) -> Any:
        i = min(range(len(self.handles)), key=lambda k: self.in_flight[k])
        self.in_flight[i] += 1
        try:
            return await call(self.handles[i])
        finally:
            self.in_flight[i] -= 1


class ControllerActor:
    def __init__(
        self,
        settings: dict[str, Any],
        runtime: Any = None,
        store: LmdbStore | None = None,
    ) -> None:
        from actors.remote import RayRuntime

        self.settings = Settings.from_dict(settings)
        self.runtime = runtime or RayRuntime(settings)
        self.store = store or LmdbStore(
            self.settings.data_path,
            self.settings.storage.lmdb_map_size,
            self.settings.storage.lmdb_max_map_size,
        )
        self.routes: dict[str, str] = self.store.routes()
        self.streams: dict[str, Any] = {}
        for name in sorted(set(self.routes.values())):
            self.streams[name] = self.runtime.stream_actor(name)
        self.pool = ActorPool(self.runtime.application_actors())
        self.writer = self.runtime.writer()
        self.applications = list(self.settings.applications.builtin)
        self._route_lock = asyncio.Lock()
        self._tick_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.last_report = TickReport()
        self.tick_errors = 0
        self.ray_windows = ray_metrics.counter(
            "modelmon_windows_analyzed", "Closed windows analyzed and committed."
        )
        self.ray_results = ray_metrics.counter(
            "modelmon_results_stored", "Results and metrics stored."
        )
        self.ray_late = ray_metrics.counter(
            "modelmon_late_batches_stored", "Late-event batches stored."
        )
        self.ray_endpoints = ray_metrics.gauge(
            "modelmon_endpoints_routed", "Endpoints with a stream actor."
        )

    async def set_applications(self, names: list[str]) -> None:
        self.applications = list(names)

    # -- routing ------------------------------------------------------------------------

    async def route(self, uid: str) -> str:
        """The stream actor of an endpoint, made on first use: one per endpoint up to
        stream.max_actors, then the least-loaded one."""
        if uid in self.routes:
            return self.routes[uid]
        async with self._route_lock:
            if uid in self.routes:
                return self.routes[uid]
            if len(self.streams) < self.settings.stream.max_actors:
                name = f"stream:{uid}"
            else:
                load = {n: 0 for n in self.streams}
                for actor in self.routes.values():
                    load[actor] = load.get(actor, 0) + 1
                name = min(sorted(load), key=lambda n: load[n])
            self.store.put_route(uid, name)
            if name not in self.streams:
                self.streams[name] = self.runtime.stream_actor(name)
            await self.streams[name].add_endpoint.remote(uid)
            self.routes[uid] = name
            return name

    def route_table(self) -> dict[str, str]:
        return dict(self.routes)

    # -- the tick -----------------------------------------------------------------------

    async def update(self, now: float | None = None) -> dict[str, Any]:
        """One tick over every stream actor; returns what it did."""
        async with self._tick_lock:
            report = TickReport(started=time.time())
            now = time.time() if now is None else now
            await asyncio.gather(
                *(
                    self._tick_stream(name, handle, now, report)
                    for name, handle in self.streams.items()
                )
            )
            report.finished = time.time()
            self.ticks += 1
            self.last_report = report
            self.ray_windows.inc(report.windows)
            self.ray_results.inc(report.results)
            self.ray_late.inc(report.late_batches)
            self.ray_endpoints.set(len(self.routes))
            return report.__dict__

    async def _tick_stream(self, name: str, handle: Any, now: float, report: TickReport) -> None:
        closed = None
        for attempt in range(3):
            try:
                closed = await handle.collect.remote(now)
                break
            except Exception as exc:  # restarting: the first call may fail, retry briefly
                if attempt == 2:
                    report.failures.append(f"{name}: collect: {exc!r}"[:500])
                    return  # its windows come back next tick
                await asyncio.sleep(0.2)
        if closed is None:
            return
        await asyncio.gather(
            *(
                self._process_endpoint(
                    handle, uid, metas, frontier, report, None if last is None else now - last
                )
                for uid, metas, frontier, last in closed
            )
        )

    async def _process_endpoint(
        self,
        handle: Any,
        uid: str,
        metas: list[WindowMeta],
        frontier: float | None,
        report: TickReport,
        silence: float | None = None,
    ) -> None:
        endpoint = self.store.get_endpoint(uid)
        if endpoint is None:
            return
        try:
            for meta in metas:
                data = handle.window_data.remote(uid, meta.start, meta.late)
                outputs: list[AppOutput] = []
                if not meta.late:
                    outputs = list(
                        await asyncio.gather(
                            *(
                                self._run_application(app, endpoint, meta, data)
                                for app in self.applications
                            )
                        )
                    )
                await self.writer.commit_window.remote(
                    meta, data, outputs, endpoint, self.applications
                )
                await handle.ack.remote(uid, meta.start, meta.late)
                if meta.late:
                    report.late_batches += 1
                else:
                    report.windows += 1
                    report.results += sum(len(o.results) for o in outputs)
                    report.failures.extend(
                        f"{uid}/{o.application}: {o.failure}" for o in outputs if o.failure
                    )
            if frontier is not None:
                await self.writer.advance.remote(
                    uid, frontier, self.applications, endpoint, None if metas else silence
                )
                await handle.frontier_committed.remote(uid, frontier)
        except Exception as exc:
            self.tick_errors += 1
            report.failures.append(f"{uid}: {exc!r}"[:500])
            log.warning("tick: endpoint %s: %r (retried next tick)", uid, exc, exc_info=True)

    async def _run_application(
        self, app: str, endpoint: dict[str, Any], meta: WindowMeta, data: Any
    ) -> AppOutput:
        for attempt in range(2):
            try:
                return await self.pool.run(lambda h: h.run.remote(app, endpoint, meta, data))
            except Exception as exc:  # the actor died; Ray restarts it, try another
                if attempt:
                    return AppOutput(application=app, failure=f"application actor failed: {exc!r}")
        raise AssertionError("unreachable")

    # -- the loop -----------------------------------------------------------------------

    async def ensure_running(self) -> bool:
        """Start the tick loop if it is not running (after a restart, too)."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
            return True
        return False

    async def stop_loop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None

    async def _loop(self) -> None:
        interval = min(self.settings.controller.tick_interval, self.settings.windows.base_period)
        while self.pool.handles:
            try:
                self.applications = list(await self.pool.handles[0].names.remote())
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("application names: %r", exc)
                await asyncio.sleep(interval)
        while True:
            try:
                await self.update()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.tick_errors += 1
                log.exception("tick failed: %r", exc)
            await asyncio.sleep(interval)

    async def status(self) -> dict[str, Any]:
        return {
            "ticks": self.ticks,
            "tick_errors": self.tick_errors,
            "endpoints": len(self.routes),
            "stream_actors": sorted(self.streams),
            "application_actors": len(self.pool.handles),
            "applications": self.applications,
            "last_tick": self.last_report.__dict__,
            "loop_running": self._loop_task is not None and not self._loop_task.done(),
            "ray_metrics": ray_metrics.is_live(self.ray_windows),
        }

    async def ping(self) -> str:
        return "controller"
