"""Group commit of accepted events into the LMDB durability log.

Requests wait on a future while one flusher writes everything that queued up meanwhile in
one durable transaction (so single-event posts are micro-batched for free), merging rows
per (endpoint, window) into one log record. Only then are the requests answered (202),
and the records handed to `forward`, which sends them to the stream actors.

The transaction itself is `append`: the LMDB store on the log owner's node (on a thread
of its own), or a call to the log owner from an ingestion server on another node.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.storage.lmdb_store import LmdbStore

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


def store_append(store: LmdbStore, executor: Executor | None) -> Append:
    """Appends by this process's LMDB store, on `executor` (the event loop goes on). The
    records' stored bytes come back too: they are what the stream actors are sent (packed
    once, for the log; a batch object would be pickled again for Ray)."""

    async def append(
        records: list[WireRecord], specs: list[dict[str, Any]], registered: list[dict[str, Any]]
    ) -> tuple[list[int], list[bytes] | None]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            executor, store.wal_append_values, records, specs, registered
        )

    return append


@dataclass
class _Request:
    records: list[tuple[str, float, ColumnBatch]]
    new_endpoints: list[dict[str, Any]]
    future: asyncio.Future[None]
    registered: list[dict[str, Any]]


class GroupCommitLog:
    def __init__(self, append: Append, forward: Forward) -> None:
        self._append = append
        self.forward = forward
        self._queue: list[_Request] = []
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._forwards: set[asyncio.Task[None]] = set()
        self.commits = 0
        self.records_logged = 0
        self.queued_rows = 0  # accepted by a handler, not yet in a committed log transaction
        self.committed_rows = 0  # rows this log committed, ever (a running total)
        self.forwarding_rows = 0  # committed, their hand-off to stream actors under way

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Write what is queued, then stop; forwards in flight are awaited."""
        if self._task is not None:
            if self._queue:
                self._idle.clear()
                await self._idle.wait()
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None
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
        if self._task is None or self._task.done():
            raise RuntimeError("durability log is not running")
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.queued_rows += sum(len(batch) for _, _, batch in records)
        self._queue.append(_Request(records, new_endpoints, future, registered or []))
        self._wake.set()
        await asyncio.shield(future)

    def _forwarded(self, rows: int, task: asyncio.Task[None]) -> None:
        self._forwards.discard(task)
        self.forwarding_rows -= rows

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            requests, self._queue = self._queue, []
            if not requests:
                self._idle.set()
                continue
            merged = _merge([r for req in requests for r in req.records])
            specs = [s for req in requests for s in req.new_endpoints]
            registered = [s for req in requests for s in req.registered]
            rows = sum(len(batch) for _, _, batch in merged)
            try:
                seqs, values = await self._append(
                    [(uid, start, batch.to_wire()) for uid, start, batch in merged],
                    specs,
                    registered,
                )
            except asyncio.CancelledError:
                for req in requests:
                    if not req.future.done():
                        req.future.cancel()
                raise
            except Exception as exc:
                self.queued_rows -= rows
                log.error("durability log write failed: %r", exc)
                for req in requests:
                    if not req.future.done():
                        req.future.set_exception(exc)
                continue
            self.committed_rows += rows
            self.queued_rows -= rows
            self.commits += 1
            self.records_logged += len(merged)
            for req in requests:
                if not req.future.done():
                    req.future.set_result(None)
            sent: Sequence[ColumnBatch | bytes] = (
                values if values is not None else [batch for _, _, batch in merged]
            )
            logged: list[LoggedRecord] = [
                (uid, seq, start, rows)
                for (uid, start, _), seq, rows in zip(merged, seqs, sent, strict=True)
            ]
            if logged:  # a commit of registrations only has nothing to forward
                self.forwarding_rows += rows
                task = loop.create_task(self.forward(logged))
                self._forwards.add(task)
                task.add_done_callback(functools.partial(self._forwarded, rows))
            if not self._queue:
                self._idle.set()


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
