"""ControllerActor: routes endpoints to stream actors and, every tick, moves the closed
windows through the application actors to the writer, in batches.

`update()` is idempotent: a window is forgotten by its stream actor only after the writer
committed it, so a tick that fails half-way is simply done again by the next one.
A tick makes a fixed number of Ray calls per stream actor (collect, data, acknowledge),
a few per application actor and one to the writer, whatever the number of endpoints; the
windows of one endpoint are committed in order.
"""

from __future__ import annotations

import asyncio
import logging
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

from modelmon_daemon.actors import ray_metrics
from modelmon_daemon.config import Settings
from modelmon_daemon.core.errors import one_line
from modelmon_daemon.core.records import AppOutput, WindowMeta, spec_version
from modelmon_daemon.core.tasks import cancel_and_wait
from modelmon_daemon.storage.log_view import LogView

log = logging.getLogger(__name__)

DELIVER_BATCH = 256  # endpoint records read and handed to the application actors at once


@dataclass
class StreamTick:
    """What one stream actor closed this tick."""

    name: str
    handle: Any
    keys: list[tuple[str, float, bool]] = field(default_factory=list)
    metas: list[WindowMeta] = field(default_factory=list)
    advances: list[tuple[str, float, float | None]] = field(default_factory=list)


@dataclass
class TickBatch:
    streams: list[StreamTick] = field(default_factory=list)
    max_rows: int = 0  # 0 = no limit
    rows: int = 0
    deferred: int = 0  # endpoints whose windows wait for the next tick

    def add_stream(
        self,
        name: str,
        handle: Any,
        closed: list[tuple[str, list[WindowMeta], float | None, float | None]],
        now: float,
    ) -> None:
        tick = StreamTick(name, handle)
        for uid, metas, frontier, last in closed:
            rows = sum(m.rows for m in metas)
            if self.max_rows and self.rows and self.rows + rows > self.max_rows:
                self.deferred += 1  # windows and frontier both wait: order is kept
                continue
            self.rows += rows
            for meta in metas:
                tick.keys.append((uid, meta.start, meta.late))
                tick.metas.append(meta)
            if frontier is not None:
                silence = None if metas or last is None else now - last
                tick.advances.append((uid, frontier, silence))
        if tick.keys or tick.advances:
            self.streams.append(tick)

    def uids(self) -> set[str]:
        return {m.uid for s in self.streams for m in s.metas} | {
            a[0] for s in self.streams for a in s.advances
        }


# where a window's application outputs are: (chunk, position) among the refs the writer
# receives, or the outputs themselves (failures)
OutputsAt = tuple[int, int] | list[AppOutput]


class WindowDataLost(RuntimeError):
    """A stream actor's window data is gone (it died during the tick)."""


DATA_CHECK_SECONDS = 30.0


async def _data_lost(ref: Any) -> bool:
    """Whether a window-data ref can no longer be read (checked only after a failed
    application call: it fetches the data here)."""
    try:
        async with asyncio.timeout(DATA_CHECK_SECONDS):
            await ref
    except asyncio.CancelledError:
        raise
    except Exception:  # lost with its actor, or not readable in time: the tick is redone
        return True
    return False


@dataclass
class TickReport:
    started: float = 0.0
    finished: float = 0.0
    windows: int = 0
    late_batches: int = 0
    results: int = 0
    failures: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # per phase of the tick
    deferred: int = 0  # endpoints left for the next tick (controller.max_tick_rows)


class ControllerActor:
    def __init__(
        self,
        settings: dict[str, Any],
        runtime: Any = None,
        store: LogView | None = None,
    ) -> None:
        """`store`: the log owner's state; by default the writer actor's, over Ray (the
        controller holds no LMDB handle)."""
        from modelmon_daemon.actors.remote import LogOwnerClient, RayRuntime, stream_actor_limit
        from modelmon_daemon.config import stream_row_budget

        self.settings = Settings.from_dict(settings)
        # 0 (the defaults) resolved here too, for a controller made without the daemon;
        # the stream actors it makes get the resolved settings
        stream = self.settings.stream
        stream.max_actors = stream_actor_limit(self.settings)
        stream.max_buffered_rows = stream_row_budget(self.settings, stream.max_actors)
        settings = self.settings.to_dict()
        self.runtime = runtime or RayRuntime(settings)
        self.store: LogView = store or LogOwnerClient(self.runtime.writer())
        self.routes: dict[str, str] = self.store.routes()
        self._routing: dict[str, asyncio.Future[str]] = {}
        self._load: dict[str, int] = {}  # endpoints per stream actor
        for actor in self.routes.values():
            self._load[actor] = self._load.get(actor, 0) + 1
        self.streams: dict[str, Any] = {}
        for index, name in enumerate(sorted(set(self.routes.values()))):
            self.streams[name] = self.runtime.stream_actor(name, index)
        # endpoint -> actor by a hash of its uid, so its reference stats stay cached there
        self.app_actors: list[Any] = list(self.runtime.application_actors())
        self.writer = self.runtime.writer()
        self.applications = list(self.settings.applications.builtin)
        self._route_lock = asyncio.Lock()
        self._route_writes: list[tuple[str, str, asyncio.Future[None]]] = []
        self._route_flusher: asyncio.Future[None] | None = None
        self._tick_lock = asyncio.Lock()
        self._loop_task: asyncio.Task[None] | None = None
        self.ticks = 0
        self.last_report = TickReport()
        self.tick_errors = 0
        self.staged_ticks = 0  # numbers each tick's staged events files (see WriterActor)
        self.maintenance_at = 0.0  # when to ask the writer for storage maintenance next
        self.paused_until = 0.0
        self._sent: dict[int, dict[str, str]] = {}  # app actor -> uid -> spec version sent
        self._undelivered: set[str] = set()  # endpoints whose record may be new to its actor
        self._deliverer: asyncio.Task[None] | None = None
        self.records_delivered = 0
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
        pending = self._routing.get(uid)
        if pending is None:  # concurrent first calls share one decision
            pending = self._routing[uid] = asyncio.ensure_future(self._new_route(uid))
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self._routing.pop(uid, None)

    async def route_many(self, uids: list[str]) -> dict[str, str]:
        """The routes of many endpoints in one call (a burst of registrations); an
        endpoint whose routing failed is left out (its first event routes it)."""
        names = await asyncio.gather(*(self.route(uid) for uid in uids), return_exceptions=True)
        routed = {uid: n for uid, n in zip(uids, names, strict=True) if isinstance(n, str)}
        self.deliver_soon(list(routed))  # new, or registered again with a new reference
        return routed

    async def _new_route(self, uid: str) -> str:
        """Only the choice is serialized; persisting it (off the event loop) and handing
        the endpoint to its actor run concurrently for many registrations."""
        async with self._route_lock:
            if len(self.streams) < self.settings.stream.max_actors:
                name = f"stream:{uid}"
            else:
                name = min(sorted(self._load), key=lambda n: self._load[n])
            self._load[name] = self._load.get(name, 0) + 1
            if name not in self.streams:
                self.streams[name] = self.runtime.stream_actor(name, len(self.streams))
        try:
            await self._persist_route(uid, name)
            await self.streams[name].add_endpoint.remote(uid)
        except BaseException:
            self._load[name] -= 1
            raise
        self.routes[uid] = name
        self.deliver_soon([uid])
        return name

    async def _persist_route(self, uid: str, name: str) -> None:
        """Routes decided meanwhile are written together, one durable transaction per
        batch (a burst of registrations is not one fsync each)."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._route_writes.append((uid, name, done))
        if self._route_flusher is None or self._route_flusher.done():
            self._route_flusher = asyncio.ensure_future(self._flush_routes())
        await done

    async def _flush_routes(self) -> None:
        while self._route_writes:
            batch, self._route_writes = self._route_writes, []
            try:
                await asyncio.to_thread(self.store.put_routes, [(u, n) for u, n, _ in batch])
            except Exception as exc:
                for _, _, done in batch:
                    if not done.done():
                        done.set_exception(exc)
                continue
            for _, _, done in batch:
                if not done.done():
                    done.set_result(None)

    async def forget(self, uid: str) -> bool:
        """Stop analyzing an endpoint: between ticks, its stream actor drops its buffers and
        the route goes. The caller then deletes its stored state."""
        async with self._tick_lock, self._route_lock:
            name = self.routes.pop(uid, None)
            self._undelivered.discard(uid)
            for sent in self._sent.values():
                sent.pop(uid, None)
            if name is None:
                return False
            self._load[name] = max(0, self._load.get(name, 1) - 1)
            if name in self.streams:
                await self.streams[name].remove_endpoint.remote(uid)
            return True

    def route_table(self) -> dict[str, str]:
        return dict(self.routes)

    # -- endpoint records, ahead of their windows ---------------------------------------

    def deliver_soon(self, uids: list[str]) -> None:
        """Hand these endpoints' records to their application actors between ticks, so
        each actor unpacks a record and derives its reference arrays when the endpoint
        registers (or the daemon starts), not in the tick of its first window. Only an
        optimization: a record an actor lacks still goes with the window."""
        if not self.app_actors or not uids:
            return
        self._undelivered.update(uids)
        if self._deliverer is None or self._deliverer.done():
            self._deliverer = asyncio.get_running_loop().create_task(self._deliver_queued())

    async def _deliver_queued(self) -> None:
        while self._undelivered:
            batch = sorted(self._undelivered)[:DELIVER_BATCH]
            self._undelivered.difference_update(batch)
            try:
                async with self._tick_lock:  # a tick goes first; a batch waits for it
                    await self._deliver(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "delivering %d endpoint records failed (they go with their windows): %r",
                    len(batch),
                    exc,
                )

    async def _deliver(self, uids: list[str]) -> int:
        """One batch: each record read once (only those not at their actor in this
        version), one prepare call per application actor. Returns how many went."""
        specs = await self._specs_of({uid for uid in uids if uid in self.routes})
        by_actor: dict[int, dict[str, tuple[str, bytes]]] = {}
        for uid, (version, raw) in specs.items():
            if raw is not None:
                by_actor.setdefault(self._app_of(uid), {})[uid] = (version, raw)
        actors = list(by_actor)
        answers = await asyncio.gather(
            *(self.app_actors[k].prepare.remote(by_actor[k]) for k in actors),
            return_exceptions=True,
        )
        sent = 0
        for k, answer in zip(actors, answers, strict=True):
            if isinstance(answer, BaseException):  # restarting: its windows bring them
                log.info("application actor %d: prepare failed: %r", k, answer)
                continue
            self._sent.setdefault(k, {}).update({u: v for u, (v, _) in by_actor[k].items()})
            sent += len(by_actor[k])
        self.records_delivered += sent
        return sent

    # -- the tick -----------------------------------------------------------------------

    async def update(self, now: float | None = None) -> dict[str, Any]:
        """One tick over every stream actor, batched: one collect and one data call per
        stream actor, a few application calls per actor of the pool (many endpoint-windows
        each), one writer call for all, one acknowledgement per stream actor. Returns
        what it did."""
        async with self._tick_lock:
            report = TickReport(started=time.time())
            now = time.time() if now is None else now
            names = list(self.streams)
            collected = await asyncio.gather(
                *(self._collect(name, self.streams[name], now, report) for name in names)
            )
            batch = TickBatch(max_rows=self.settings.controller.max_tick_rows)
            for name, closed in zip(names, collected, strict=True):
                if closed:
                    batch.add_stream(name, self.streams[name], closed, now)
            report.deferred = batch.deferred
            if batch.streams:
                try:
                    await self._run_batch(batch, report)
                except Exception as exc:
                    self.tick_errors += 1
                    report.failures.append(f"tick: {one_line(exc)}"[:500])
                    log.warning("tick failed (retried next tick): %s", one_line(exc), exc_info=True)
            self._maintain_when_due()
            report.finished = time.time()
            self.ticks += 1
            self.last_report = report
            self.ray_windows.inc(report.windows)
            self.ray_results.inc(report.results)
            self.ray_late.inc(report.late_batches)
            self.ray_endpoints.set(len(self.routes))
            return report.__dict__

    def _maintain_when_due(self) -> None:
        """Storage maintenance (storage.retention, compaction of past days) is asked for
        after a tick's acknowledgements, not done inside its commit: compacting up to
        storage.maintenance_batch partitions then never holds a tick's windows back, and
        an idle daemon still expires old data. Not awaited: the writer runs it before the
        next tick's calls (its calls run one at a time) and never raises from it."""
        now = time.time()
        if now < self.maintenance_at:
            return
        self.maintenance_at = now + self.settings.storage.maintenance_interval
        try:
            self.writer.maintain_when_due.remote()
        except Exception as exc:  # the writer restarting: asked again next interval
            log.warning("storage maintenance not asked for: %s", one_line(exc))

    async def _collect(self, name: str, handle: Any, now: float, report: TickReport) -> Any:
        for attempt in range(3):
            try:
                return await handle.collect.remote(now)
            except Exception as exc:  # restarting: the first call may fail, retry briefly
                if attempt == 2:
                    report.failures.append(f"{name}: collect: {one_line(exc)}"[:500])
                    return None  # its windows come back next tick
                await asyncio.sleep(0.2)
        return None

    async def _specs_of(self, uids: set[str]) -> dict[str, tuple[str, bytes | None]]:
        """(version, stored record) of each endpoint still registered, read in one call;
        the version is a digest of the stored bytes, so application actors unpack
        reference stats only when they change. The record is left out (None) where the
        endpoint's application actor has this version already: an unchanged fleet's tick
        moves digests, not reference stats. The controller never unpacks them."""
        ordered = sorted(uids)
        known = [self._sent.get(self._app_of(uid), {}).get(uid) for uid in ordered]
        found = await asyncio.to_thread(self.store.get_endpoints_changed, ordered, known)
        return {uid: entry for uid, entry in zip(ordered, found, strict=True) if entry is not None}

    async def _complete(
        self, send: dict[str, tuple[str, bytes | None]], specs: dict[str, tuple[str, bytes | None]]
    ) -> dict[str, tuple[str, bytes | None]]:
        """`send` with every record present: those left out by _specs_of (an actor that
        restarted, or a chunk moved to another actor) are read now, and `specs` keeps
        them for the tick's other chunks. An endpoint deleted meanwhile leaves both."""
        lacking = sorted(uid for uid, (_, raw) in send.items() if raw is None)
        if lacking:
            raws = await asyncio.to_thread(self.store.get_endpoints_raw, lacking)
            for uid, raw in zip(lacking, raws, strict=True):
                if raw is None:
                    send.pop(uid)
                    specs.pop(uid, None)
                else:
                    specs[uid] = send[uid] = (spec_version(raw), raw)
        return send

    async def _run_batch(self, batch: TickBatch, report: TickReport) -> None:
        t0 = time.perf_counter()
        # the writer writes the events files of each endpoint's first window at once
        # (they need no application output, and no record from here): its work, the
        # stream actors' and the applications' overlap
        self.staged_ticks += 1
        first: dict[str, WindowMeta] = {}
        for s in batch.streams:
            for meta in s.metas:
                first.setdefault(meta.uid, meta)
        staging = self.writer.stage_events.remote(self.staged_ticks, list(first.values()))
        n_apps = len(self.app_actors)
        parts = [
            [-1 if meta.late else self._app_of(meta.uid) for meta in s.metas] for s in batch.streams
        ]
        data = []
        for s, owners in zip(batch.streams, parts, strict=True):
            refs = s.handle.windows_data.options(num_returns=n_apps).remote(s.keys, owners, n_apps)
            data.append([refs] if n_apps == 1 else list(refs))
        specs = await self._specs_of(batch.uids())
        placed, chunks, ready = await self._run_applications(batch, data, parts, specs)
        try:
            await staging
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the commit writes them instead
            log.warning("staging events files failed (written at the commit): %s", one_line(exc))
        # outputs the writer made ready as they came are not sent to the commit again
        for c, made in enumerate(ready):
            try:
                if await made:
                    chunks[c] = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "staging application outputs failed (done at the commit): %s", one_line(exc)
                )
        t1 = time.perf_counter()
        items = [
            (li, index, meta, placed.get((li, index), []))
            for li, s in enumerate(batch.streams)
            for index, meta in enumerate(s.metas)
            if meta.uid in specs
        ]
        advances = [a for s in batch.streams for a in s.advances if a[0] in specs]
        # the writer reads the windows' rows from its own log, and the applications'
        # outputs straight from the application actors (refs: they never pass through
        # this actor)
        status, summaries = await self.writer.commit_tick.remote(
            items, advances, self.applications, None, *chunks, tick=self.staged_ticks
        )
        t2 = time.perf_counter()
        done = {(items[i][0], items[i][1]) for i, flag in enumerate(status) if flag is not None}
        acks = []
        for li, s in enumerate(batch.streams):
            keys = [k for index, k in enumerate(s.keys) if (li, index) in done]
            acks.append(s.handle.ack_many.remote(keys, [(u, f) for u, f, _ in s.advances]))
        await asyncio.gather(*acks)
        report.seconds = {
            "applications": t1 - t0,
            "commit": t2 - t1,
            "acknowledge": time.perf_counter() - t2,
        }
        for i, flag in enumerate(status):
            meta = items[i][2]
            if flag is None:
                report.failures.append(f"{meta.uid}: window {meta.start} not committed")
                continue
            if meta.late:
                report.late_batches += 1
            else:
                report.windows += 1
                results, failures = summaries[i]
                report.results += results
                report.failures.extend(failures)

    def _app_of(self, uid: str) -> int:
        """The application actor of an endpoint: always the same one, by a hash of its
        uid, so its reference stats stay cached there."""
        return zlib.crc32(uid.encode()) % len(self.app_actors)

    async def _run_applications(
        self,
        batch: TickBatch,
        data: list[list[Any]],
        parts: list[list[int]],
        specs: dict[str, tuple[str, bytes | None]],
    ) -> tuple[dict[tuple[int, int], OutputsAt], list[Any], list[Any]]:
        """Each application actor gets its own part of each stream's window data (`data`,
        per stream one ref per actor; `parts`, per window its actor or -1); a chunk whose
        actor lacks a spec is sent again with it. Returns where each window's outputs
        are: (chunk, position) in the returned chunks (refs to the application actors'
        answers), or the failure outputs; and per chunk, the writer's stage_outputs call
        that makes them ready for the commit as soon as they are computed. Jobs are
        (window index in the stream's batch, uid, spec version, meta, position in the
        actor's part), sent without the index."""
        calls = []
        for li, s in enumerate(batch.streams):
            chunks: dict[int, list[tuple[int, str, str, WindowMeta]]] = {}
            indexes: dict[int, list[int]] = {}
            positions = [0] * len(data[li])
            for index, (meta, k) in enumerate(zip(s.metas, parts[li], strict=True)):
                if k < 0:
                    continue
                position = positions[k]
                positions[k] += 1
                if meta.uid not in specs:
                    continue
                chunks.setdefault(k, []).append((position, meta.uid, specs[meta.uid][0], meta))
                indexes.setdefault(k, []).append(index)
            for k, jobs in chunks.items():
                calls.append(self._run_chunk(k, li, data[li][k], jobs, specs, indexes[k]))
        placed: dict[tuple[int, int], OutputsAt] = {}
        refs: list[Any] = []
        ready: list[Any] = []
        # every call finishes (and has made its writer calls) before a failure fails the
        # tick, so nothing of this tick reaches the writer after the next one began
        answers = []
        for answer in await asyncio.gather(*calls, return_exceptions=True):
            if isinstance(answer, BaseException):
                raise answer
            answers.append(answer)
        for li, held, ref, failed, made in answers:
            if ref is None:
                placed.update({(li, index): failed for index in held})
                continue
            placed.update({(li, index): (len(refs), pos) for pos, index in enumerate(held)})
            refs.append(ref)
            ready.append(made)
        return placed, refs, ready

    async def _run_chunk(
        self,
        k: int,
        li: int,
        data: Any,
        jobs: list[tuple[int, str, str, WindowMeta]],
        specs: dict[str, tuple[str, bytes | None]],
        indexes: list[int],
    ) -> tuple[int, list[int], Any, list[AppOutput], Any]:
        """(li, the jobs' window indexes, a ref to the outputs per job, or None and the
        failure outputs, and the writer's stage_outputs call on the outputs, or None)."""
        handles = self.app_actors
        sent = self._sent.setdefault(k, {})
        send = {uid: specs[uid] for _, uid, version, _ in jobs if sent.get(uid) != version}
        error = "no attempt"
        for _ in range(3):
            send = await self._complete(send, specs)
            # an endpoint deleted meanwhile is left out, not the whole call failed for it
            kept = [
                (job, index) for job, index in zip(jobs, indexes, strict=True) if job[1] in specs
            ]
            jobs = [(p, uid, specs[uid][0], meta) for (p, uid, _, meta), _ in kept]
            indexes = [index for _, index in kept]
            if not jobs:
                return li, [], None, [], None
            try:
                outputs, missing_ref = (
                    handles[k].run_many.options(num_returns=2).remote(data, jobs, send)
                )
                missing = await missing_ref
            except Exception as exc:  # the actor died; Ray restarts it: try the next one
                if await _data_lost(data):
                    # the stream actor died with its windows' data: no application can
                    # analyze them, and committing them as failed would lose them; the
                    # tick fails and the restarted actor's replay brings them back
                    raise WindowDataLost(
                        f"window data of stream {li} lost: {one_line(exc)}"
                    ) from exc
                error = one_line(exc)
                self._sent.pop(k, None)
                k = (k + 1) % len(handles)
                send = {uid: specs[uid] for _, uid, _, _ in jobs}
                continue
            known = self._sent.setdefault(k, {})
            if missing:  # it restarted since: it knows only what came with this call
                known.clear()
            known.update({uid: version for uid, (version, _) in send.items()})
            if missing:
                send = {uid: specs[uid] for uid in set(missing)}
                continue
            made = self.writer.stage_outputs.remote(
                self.staged_ticks, [meta for *_, meta in jobs], outputs
            )
            return li, indexes, outputs, [], made
        failed = f"application actor failed: {error}"
        return (
            li,
            indexes,
            None,
            [AppOutput(application=a, failure=failed) for a in self.applications],
            None,
        )

    # -- the loop -----------------------------------------------------------------------

    async def ensure_running(self) -> bool:
        """Start the tick loop if it is not running (after a restart, too)."""
        if self._loop_task is None or self._loop_task.done():
            self._loop_task = asyncio.get_running_loop().create_task(self._loop())
            return True
        return False

    async def pause(self, seconds: float) -> float:
        """Skip the loop's ticks for `seconds` (maintenance, benchmarks); update() called
        directly still runs. Returns when the pause ends (epoch seconds)."""
        self.paused_until = time.time() + max(0.0, seconds)
        return self.paused_until

    async def stop_loop(self) -> None:
        if self._deliverer is not None:
            await cancel_and_wait(self._deliverer)
            self._deliverer = None
        if self._loop_task is not None:
            await cancel_and_wait(self._loop_task)
            self._loop_task = None

    async def _loop(self) -> None:
        interval = min(self.settings.controller.tick_interval, self.settings.windows.base_period)
        while self.app_actors:
            try:
                self.applications = list(await self.app_actors[0].names.remote())
                break
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("application names: %s", one_line(exc))
                await asyncio.sleep(interval)
        self.deliver_soon(sorted(self.routes))  # new application actors: every record
        while True:
            try:
                if time.time() >= self.paused_until:
                    await self.update()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.tick_errors += 1
                log.exception("tick failed: %s", one_line(exc))
            await asyncio.sleep(interval)

    async def status(self) -> dict[str, Any]:
        nodes = await asyncio.gather(
            *(asyncio.wait_for(a.node_id.remote(), 5) for a in self.app_actors),
            return_exceptions=True,
        )
        names = sorted(self.streams)
        stream_nodes = await asyncio.gather(
            *(asyncio.wait_for(self.streams[n].node_id.remote(), 5) for n in names),
            return_exceptions=True,
        )
        return {
            "application_nodes": [n if isinstance(n, str) else None for n in nodes],
            "stream_nodes": {
                name: n if isinstance(n, str) else None
                for name, n in zip(names, stream_nodes, strict=True)
            },
            "ticks": self.ticks,
            "tick_errors": self.tick_errors,
            "endpoints": len(self.routes),
            "stream_actors": sorted(self.streams),
            "stream_actor_limit": self.settings.stream.max_actors,
            "stream_rows_per_actor": self.settings.stream.max_buffered_rows,
            "application_actors": len(self.app_actors),
            "records_delivered": self.records_delivered,
            "applications": self.applications,
            "last_tick": self.last_report.__dict__,
            "loop_running": self._loop_task is not None and not self._loop_task.done(),
            "ray_metrics": ray_metrics.is_live(self.ray_windows),
        }

    async def ping(self) -> str:
        return "controller"
