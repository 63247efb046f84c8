"""Group commit of accepted events into the LMDB durability log.

Requests wait on a future while one flusher writes everything that queued up meanwhile in
one durable transaction (so single-event posts are micro-batched for free), merging rows
per (endpoint, window) into one log record. Only then are the requests answered (202),
and the records handed to `forward`, which sends them to the stream actors.

The transaction itself is the LMDB store's, on a thread of its own that drains the queue
(`ThreadedCommitLog`, on the log owner's node), or `append`, a call to the log owner from
an ingestion server on another node (`GroupCommitLog`).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.core.tasks import cancel_and_wait

log = logging.getLogger(__name__)

# uid, seq, window start, rows: as a ColumnBatch, or as the log stores them (log_value)
LoggedRecord = tuple[str, int, float, ColumnBatch | bytes]
Forward = Callable[[list[LoggedRecord]], Coroutine[Any, Any, None]]
WireRecord = tuple[str, float, dict[str, Any]]  # uid, window start, batch wire
# (records, new endpoints, registered endpoints) -> each record's sequence number, durable,
# and its stored bytes when the log is in this process (None when it is not)
Append = Callable[
    [list[WireRecord], list[dict[str, Any]], list[dict[str, Any]]],
    Coroutine[Any, Any, tuple[list[int], list[bytes] | None]],
]


# the same, run by a thread of its own next to the log (the LMDB store's wal_append_values)
Commit = Callable[
    [list[WireRecord], list[dict[str, Any]], list[dict[str, Any]]],
    tuple[list[int], list[bytes] | None],
]


@dataclass
class _Request:
    records: list[tuple[str, float, ColumnBatch]]
    new_endpoints: list[dict[str, Any]]
    future: asyncio.Future[None]
    registered: list[dict[str, Any]]


@dataclass
class _Group:
    """What one log transaction writes: the requests it answers, merged."""

    requests: list[_Request]
    merged: list[tuple[str, float, ColumnBatch]]
    specs: list[dict[str, Any]]
    registered: list[dict[str, Any]]
    rows: int

    @classmethod
    def of(cls, requests: list[_Request]) -> _Group:
        merged = _merge([r for req in requests for r in req.records])
        return cls(
            requests,
            merged,
            [s for req in requests for s in req.new_endpoints],
            [s for req in requests for s in req.registered],
            sum(len(batch) for _, _, batch in merged),
        )

    def wires(self) -> list[WireRecord]:
        return [(uid, start, batch.to_wire()) for uid, start, batch in self.merged]


class CommitLog:
    """What both ways of committing share: the requests' futures, the row counts the
    backpressure reads, and the hand-off of committed records to `forward`. A subclass
    queues requests (`_enqueue`) and reports each group on the event loop
    (`_committed` or `_failed`)."""

    def __init__(self, forward: Forward) -> None:
        self.forward = forward
        self._forwards: set[asyncio.Task[None]] = set()
        self.commits = 0
        self.records_logged = 0
        self.requests_committed = 0  # requests made durable (answered 202 by their commit)
        self.commit_seconds = 0.0  # wall time inside the commits (the fsync included)
        self.queued_rows = 0  # accepted by a handler, not yet in a committed log transaction
        self.committed_rows = 0  # rows this log committed, ever (a running total)
        self.forwarding_rows = 0  # committed, their hand-off to stream actors under way

    def running(self) -> bool:
        raise NotImplementedError

    async def start(self) -> None:
        raise NotImplementedError

    async def stop(self) -> None:
        """Write what is queued, then stop; forwards in flight are awaited."""
        raise NotImplementedError

    def _enqueue(self, request: _Request) -> None:
        raise NotImplementedError

    async def _drain_forwards(self) -> None:
        if self._forwards:
            await asyncio.gather(*self._forwards, return_exceptions=True)

    async def append(
        self,
        records: list[tuple[str, float, ColumnBatch]],
        new_endpoints: list[dict[str, Any]],
        registered: list[dict[str, Any]] | None = None,
    ) -> None:
        """Returns once the records are durable; raises if they could not be written.
        `registered`: endpoint records to store (replacing), in the same transaction, so
        concurrent registrations share one durable commit."""
        if not self.running():
            raise RuntimeError("durability log is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queued_rows += sum(len(batch) for _, _, batch in records)
        self._enqueue(_Request(records, new_endpoints, future, registered or []))
        # not shielded: a handler cancelled meanwhile cancels only its own future, which
        # the commit then leaves alone (its records are written all the same)
        await future

    def _forwarded(self, rows: int, task: asyncio.Task[None]) -> None:
        self._forwards.discard(task)
        self.forwarding_rows -= rows

    def _failed(self, requests: list[_Request], exc: BaseException) -> None:
        self.queued_rows -= sum(len(b) for req in requests for _, _, b in req.records)
        log.error("durability log write failed: %r", exc)
        for req in requests:
            if not req.future.done():
                req.future.set_exception(exc)

    def stats(self) -> dict[str, float]:
        """How the group commit goes: a request waits for the commit in flight, then its
        own, so the commit's wall time bounds what a fixed number of clients can post."""
        commits = self.commits
        return {
            "commits": commits,
            "requests": self.requests_committed,
            "records": self.records_logged,
            "rows": self.committed_rows,
            "commit_seconds": self.commit_seconds,
            "requests_per_commit": self.requests_committed / commits if commits else 0.0,
            "mean_commit_ms": 1e3 * self.commit_seconds / commits if commits else 0.0,
        }

    def _committed(
        self, group: _Group, seqs: list[int], values: list[bytes] | None, seconds: float
    ) -> None:
        """On the event loop: answer the requests, then hand the records on. `seconds`:
        the commit's wall time."""
        rows = group.rows
        self.committed_rows += rows
        self.queued_rows -= rows
        self.commits += 1
        self.requests_committed += len(group.requests)
        self.commit_seconds += seconds
        self.records_logged += len(group.merged)
        for req in group.requests:
            if not req.future.done():
                req.future.set_result(None)
        sent: Sequence[ColumnBatch | bytes] = (
            values if values is not None else [batch for _, _, batch in group.merged]
        )
        logged: list[LoggedRecord] = [
            (uid, seq, start, stored)
            for (uid, start, _), seq, stored in zip(group.merged, seqs, sent, strict=True)
        ]
        if logged:  # a commit of registrations only has nothing to forward
            self.forwarding_rows += rows
            task = asyncio.get_running_loop().create_task(self.forward(logged))
            self._forwards.add(task)
            task.add_done_callback(functools.partial(self._forwarded, rows))


class GroupCommitLog(CommitLog):
    """Group commit by an async `append` (a call to the log owner on another node): one
    transaction in flight, everything queued meanwhile goes in the next."""

    def __init__(self, append: Append, forward: Forward) -> None:
        super().__init__(forward)
        self._append = append
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            if self._queue:
                self._idle.clear()
                await self._idle.wait()
            if not self._task.done():
                await cancel_and_wait(self._task)
            elif not self._task.cancelled() and self._task.exception() is not None:
                # ended earlier; its requests were answered then
                log.error("durability log had stopped: %r", self._task.exception())
            self._task = None
        await self._drain_forwards()

    def _enqueue(self, request: _Request) -> None:
        self._queue.append(request)
        self._wake.set()

    async def _run(self) -> None:
        requests: list[_Request] = []
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                requests, self._queue = self._queue, []
                if not requests:
                    self._idle.set()
                    continue
                try:
                    group = _Group.of(requests)
                    started = time.perf_counter()
                    seqs, values = await self._append(group.wires(), group.specs, group.registered)
                    seconds = time.perf_counter() - started
                except asyncio.CancelledError:
                    for req in requests:
                        if not req.future.done():
                            req.future.cancel()
                    raise
                except Exception as exc:
                    self._failed(requests, exc)
                    continue
                self._committed(group, seqs, values, seconds)
                if not self._queue:
                    self._idle.set()
        finally:
            # ended (cancelled, or by what no `except Exception` catches): nobody will
            # write what it held or what is queued; answer them rather than leave them
            # waiting, and let stop() stop waiting for an idle log
            orphans = [r for r in (*requests, *self._queue) if not r.future.done()]
            self._queue = []
            if orphans:
                self._failed(orphans, RuntimeError("durability log is not running"))
            self._idle.set()


class ThreadedCommitLog(CommitLog):
    """Group commit by the log in this process, on a thread of its own that never waits
    for the event loop: while it commits, requests queue; when it is done it hands the
    results to the loop and takes the next group at once. (Handing each commit to an
    executor and back cost ~1 ms of thread wake-up on top of the ~1 ms commit, half of a
    busy log's time.) Requests queued in one turn of the loop share a commit."""

    def __init__(self, commit: Commit, forward: Forward) -> None:
        super().__init__(forward)
        self._commit = commit
        self._lock = threading.Condition()
        self._pending: list[_Request] = []  # guarded by _lock
        self._kicked = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._thread_alive = False  # set by the thread itself: is_alive() takes a lock
        self._loop: asyncio.AbstractEventLoop | None = None

    def running(self) -> bool:
        """Asked on every append: a flag the thread clears as it ends, not
        `Thread.is_alive` (which takes the thread's state lock, ~1% of a single event)."""
        return self._thread_alive and not self._stopping

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="modelmon-log", daemon=True)
        self._thread_alive = True
        self._thread.start()

    async def stop(self) -> None:
        if self._thread is None:
            return
        with self._lock:
            self._stopping = True
            self._lock.notify()
        # the thread hands every result to the loop before it ends, so they have all run
        # by the time the join's own result arrives
        await asyncio.to_thread(self._thread.join)
        self._thread = None
        await self._drain_forwards()

    def _enqueue(self, request: _Request) -> None:
        with self._lock:
            self._pending.append(request)
        if not self._kicked:
            # wake the thread once the loop is done with this turn: requests queued
            # meanwhile (concurrent handlers) join the same transaction
            self._kicked = True
            asyncio.get_running_loop().call_soon(self._kick)

    def _kick(self) -> None:
        self._kicked = False
        with self._lock:
            self._lock.notify()

    def _run(self) -> None:
        try:
            self._work()
        finally:
            self._thread_alive = False
            with self._lock:  # nobody will write these: answer them rather than hang
                orphans, self._pending = self._pending, []
            if orphans and self._loop is not None and not self._loop.is_closed():
                stopped = RuntimeError("durability log is not running")
                self._loop.call_soon_threadsafe(self._failed, orphans, stopped)

    def _work(self) -> None:
        loop = self._loop
        assert loop is not None
        while True:
            with self._lock:
                while not self._pending and not self._stopping:
                    self._lock.wait()
                if not self._pending:
                    return  # stopping, and everything is written
                requests, self._pending = self._pending, []
            try:
                group = _Group.of(requests)
                started = time.perf_counter()
                seqs, values = self._commit(group.wires(), group.specs, group.registered)
                seconds = time.perf_counter() - started
            except Exception as exc:  # nothing was written: every request gets the error
                loop.call_soon_threadsafe(self._failed, requests, exc)
                continue
            except BaseException as exc:  # the thread ends (_run answers what queued)
                loop.call_soon_threadsafe(self._failed, requests, exc)
                raise
            loop.call_soon_threadsafe(self._committed, group, seqs, values, seconds)


def _merge(records: list[tuple[str, float, ColumnBatch]]) -> list[tuple[str, float, ColumnBatch]]:
    """One record per (endpoint, window), rows in their order of arrival: fewer log
    entries, fewer messages to actors (generated request ids stay runs when joined)."""
    parts: dict[tuple[str, float], list[ColumnBatch]] = {}
    for uid, start, batch in records:
        parts.setdefault((uid, start), []).append(batch)
    out = []
    for (uid, start), batches in parts.items():
        first = batches[0]
        out.append(
            (uid, start, ColumnBatch.concat(batches, first.features.shape[1], len(first.outputs)))
        )
    return out
