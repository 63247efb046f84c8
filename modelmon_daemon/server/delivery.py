"""The outbox loop: notifications are written to LMDB in the same transaction as the
window that caused them (by the writer, the outbox's one owner), and delivered from
here with retries and backoff, in the daemon's HTTP process, which reads and settles
outbox entries through their owner (`Outbox`). A slow or dead receiver delays only its
own notifications, never the monitoring pipeline; every attempt is recorded in the
alert's history."""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from typing import Any, Protocol

import aiohttp

from modelmon_daemon.alerts.channels import send
from modelmon_daemon.core.errors import one_line
from modelmon_daemon.storage.lmdb_store import LmdbStore

log = logging.getLogger(__name__)


class Outbox(Protocol):
    async def entries(self) -> list[dict[str, Any]]: ...

    async def retry(self, entry: dict[str, Any], error: str, next_at: float) -> None: ...

    async def done(self, entry: dict[str, Any], delivered: bool, error: str = "") -> None: ...


class StoreOutbox:
    """The outbox of an LMDB store this process opened, on `executor`."""

    def __init__(self, store: LmdbStore, executor: Executor | None = None) -> None:
        self.store, self.executor = store, executor

    async def entries(self) -> list[dict[str, Any]]:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, self.store.outbox)

    async def retry(self, entry: dict[str, Any], error: str, next_at: float) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.outbox_retry, entry, error, next_at)

    async def done(self, entry: dict[str, Any], delivered: bool, error: str = "") -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self.executor, self.store.outbox_done, entry, delivered, error)


class OutboxDelivery:
    def __init__(
        self,
        outbox: Outbox,
        max_attempts: int,
        backoff_initial: float,
        backoff_max: float,
        poll_interval: float,
        attempt_timeout: float = 30.0,
    ) -> None:
        self.outbox = outbox
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.poll_interval = poll_interval
        self.attempt_timeout = attempt_timeout
        self._in_flight: dict[int, asyncio.Task[None]] = {}
        self.delivered = 0
        self.failed_attempts = 0

    def backoff(self, attempts: int) -> float:
        return float(min(self.backoff_initial * 2**attempts, self.backoff_max))

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        timeout = aiohttp.ClientTimeout(total=self.attempt_timeout)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            try:
                while True:
                    try:
                        entries = await self.outbox.entries()
                    except asyncio.CancelledError:
                        raise
                    except Exception as exc:
                        log.warning("outbox read failed: %s", one_line(exc))
                        entries = []
                    now = time.time()
                    for entry in entries:
                        seq = entry["seq"]
                        if entry["next_at"] <= now and seq not in self._in_flight:
                            task = loop.create_task(self._deliver(entry, session))
                            self._in_flight[seq] = task
                            task.add_done_callback(self._forget(seq))
                    await asyncio.sleep(self.poll_interval)
            finally:
                for task in list(self._in_flight.values()):
                    task.cancel()
                if self._in_flight:
                    await asyncio.gather(*self._in_flight.values(), return_exceptions=True)

    def _forget(self, seq: int) -> Any:
        def done(_task: asyncio.Task[None]) -> None:
            self._in_flight.pop(seq, None)

        return done

    async def _deliver(self, entry: dict[str, Any], session: aiohttp.ClientSession) -> None:
        try:
            await asyncio.wait_for(send(entry, session), self.attempt_timeout)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.failed_attempts += 1
            error = f"{type(exc).__name__}: {exc}"[:500]
            if entry["attempts"] + 1 >= self.max_attempts:
                log.warning(
                    "alert %s: giving up on %s: %s", entry["alert"], entry["channel"]["kind"], error
                )
                await self.outbox.done(entry, False, error)
            else:
                next_at = time.time() + self.backoff(entry["attempts"])
                await self.outbox.retry(entry, error, next_at)
            return
        self.delivered += 1
        await self.outbox.done(entry, True)
