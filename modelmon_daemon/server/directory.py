"""The ingestion process's view of the actors: handles by name, the route cache, and
forwarding of logged records to stream actors (retried; the seq makes it idempotent)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import defaultdict
from typing import Any

from modelmon_daemon.storage.wal import LoggedRecord

log = logging.getLogger(__name__)

ROUTE_BATCH = 1000  # endpoints routed per controller call
ROUTE_BATCH_DELAY = 0.05  # seconds registrations gather before their routing is asked
FORWARD_LINGER = 0.005  # seconds logged records wait to share a stream actor's next call
# Ray calls a second the forwarding may make (submitting one costs the event loop
# ~0.3 ms and more): with many stream actors busy at once, each waits longer, so all of
# them together stay under it. 1000 endpoints x 1000-row batches on 16 stream actors,
# A/B on one machine: 200/s 0.57-0.66x the single-endpoint batch rate, 100/s 0.73-0.78x,
# 50/s 0.77-0.84x (and single-endpoint batches faster too: one busy actor waits 20 ms).
# A call costs the stream actor ~1 ms of CPU whatever it carries (an empty Ray actor call
# measured 0.95-1.27 ms here): 50/s -> 20/s took the stream actor's CPU per single-event
# post from 16-31 us to 10-16 us, per fleet-row batch from 464 to 415 us (A/B, same hour)
FORWARD_CALLS_PER_S = 20.0
# ... but no record waits longer than this for its hand-off (past 10 busy actors the
# budget gives way): stream actors' live figures stay fresh, windows close on time
FORWARD_LINGER_MAX = 0.5


class ActorDirectory:
    def __init__(
        self, controller: Any, writer: Any, applications: list[Any], get_actor: Any
    ) -> None:
        self.controller = controller
        self.writer = writer
        self.applications = applications
        self._get_actor = get_actor
        self.routes: dict[str, str] = {}
        self._routing: dict[str, asyncio.Future[str]] = {}
        self._unrouted: set[str] = set()  # registered, their routing not yet asked for
        self._router: asyncio.Future[None] | None = None
        self._streams: dict[str, Any] = {}
        # per stream actor: forwards waiting for its call in flight to finish
        self._outgoing: defaultdict[
            str, list[tuple[list[LoggedRecord], float, asyncio.Future[None]]]
        ] = defaultdict(list)
        self._senders: dict[str, asyncio.Task[None]] = {}
        self.forward_failures = 0

    def stream(self, name: str) -> Any:
        if name not in self._streams:
            self._streams[name] = self._get_actor(name)
        return self._streams[name]

    async def route(self, uid: str) -> str:
        """The stream actor of `uid`; concurrent first calls share one controller call."""
        if uid in self.routes:
            return self.routes[uid]
        pending = self._routing.get(uid)
        if pending is None:
            pending = asyncio.ensure_future(self._route(uid))
            self._routing[uid] = pending
        try:
            return await asyncio.shield(pending)
        finally:
            if pending.done():
                self._routing.pop(uid, None)

    def route_soon(self, uid: str, changed: bool = False) -> None:
        """Route `uid` without waiting: registrations queued meanwhile go to the
        controller in one call (a burst of 10,000 is ten calls, not 10,000), which also
        hands their records to the application actors. `changed`: an endpoint registered
        again (its record changed), sent even if routed. A failure is logged; the first
        event or the next tick routes the endpoint again."""
        if (uid in self.routes and not changed) or uid in self._routing:
            return
        self._unrouted.add(uid)
        if self._router is None or self._router.done():
            self._router = asyncio.ensure_future(self._route_queued())

    async def _route_queued(self) -> None:
        await asyncio.sleep(ROUTE_BATCH_DELAY)
        while self._unrouted:
            batch = sorted(self._unrouted)[:ROUTE_BATCH]
            self._unrouted.difference_update(batch)
            try:
                routes = await self.controller.route_many.remote(batch)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning(
                    "routing %d endpoints failed (retried on their first event): %r",
                    len(batch),
                    exc,
                )
                continue
            self.routes.update(routes)

    async def _route(self, uid: str) -> str:
        name = await self.controller.route.remote(uid)
        self.routes[uid] = name
        return str(name)

    async def forward(self, records: list[LoggedRecord]) -> None:
        """Send logged records to their stream actors; returns once they are there. Each
        actor has at most one call in flight: records logged meanwhile wait and go in its
        next call, so a busy ingestion makes few large Ray calls instead of one per group
        commit (submitting a call costs the event loop ~0.3 ms). A failure is retried; if
        every try fails the records stay in the log and the actor replays them on restart."""
        arrival = time.time()
        by_actor: dict[str, list[LoggedRecord]] = defaultdict(list)
        for record in records:
            try:
                name = await self.route(record[0])
            except Exception as exc:
                self.forward_failures += 1
                log.warning("route %s: %r (the tick will route it)", record[0], exc)
                continue
            by_actor[name].append(record)
        loop = asyncio.get_running_loop()
        sent = []
        for name, recs in by_actor.items():
            done: asyncio.Future[None] = loop.create_future()
            self._outgoing[name].append((recs, arrival, done))
            sender = self._senders.get(name)
            if sender is None or sender.done():
                self._senders[name] = loop.create_task(self._sender(name))
            sent.append(done)
        await asyncio.gather(*sent)

    def linger(self) -> float:
        """How long records wait for more to join their actor's next call: FORWARD_LINGER,
        or longer when so many actors are busy that their calls would exceed
        FORWARD_CALLS_PER_S, at most FORWARD_LINGER_MAX. Records are durable already:
        only the hand-off to the stream actor waits, never a 202."""
        busy = sum(1 for sender in self._senders.values() if not sender.done())
        return min(FORWARD_LINGER_MAX, max(FORWARD_LINGER, busy / FORWARD_CALLS_PER_S))

    async def _sender(self, name: str) -> None:
        while self._outgoing.get(name):
            await asyncio.sleep(self.linger())  # let the commits of the next moment join
            waiting = self._outgoing.pop(name)
            try:
                await self._send(name, [(recs, arrival) for recs, arrival, _ in waiting])
            finally:
                for *_, done in waiting:
                    if not done.done():
                        done.set_result(None)

    async def _send(self, name: str, groups: list[tuple[list[LoggedRecord], float]]) -> None:
        for attempt in range(5):
            try:
                await self.stream(name).ingest_many.remote(groups)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._streams.pop(name, None)
                log.warning("forward to %s failed (%r), try %d", name, exc, attempt + 1)
                await asyncio.sleep(0.2 * 2**attempt)
        self.forward_failures += 1

    async def operational(self, uids: list[str], wait_s: float = 3.0) -> dict[str, Any]:
        by_actor: dict[str, list[str]] = defaultdict(list)
        for uid in uids:
            name = self.routes.get(uid)
            if name is None:
                try:
                    name = await asyncio.wait_for(self.route(uid), wait_s)
                except Exception:
                    continue
            by_actor[name].append(uid)
        out: dict[str, Any] = {}

        async def one(name: str, group: list[str]) -> None:
            try:
                out.update(
                    await asyncio.wait_for(self.stream(name).operational.remote(group), wait_s)
                )
            except Exception as exc:
                log.debug("operational %s: %r", name, exc)

        await asyncio.gather(*(one(n, g) for n, g in by_actor.items()))
        return out

    async def health(self, wait_s: float = 5.0) -> dict[str, bool]:
        checks = {"controller": self.controller, "writer": self.writer}
        checks.update({f"app:{i}": h for i, h in enumerate(self.applications)})

        async def ok(handle: Any) -> bool:
            try:
                await asyncio.wait_for(handle.ping.remote(), wait_s)
                return True
            except Exception:
                return False

        results = await asyncio.gather(*(ok(h) for h in checks.values()))
        return dict(zip(checks, results, strict=True))
