"""Python's cyclic garbage collector in the daemon's long-lived processes: run on a
schedule, between pieces of work, instead of automatically inside them.

Left automatic, it runs whenever allocations outnumber frees by 700, and walks the old
generations every few of those: a tick that unpickles a thousand windows' results builds
about 1.5 million objects and set it off over and over (unpickling those results took
3-4x longer with it on), and decoding a 1000-event request in the HTTP process did the
same. Reference counting frees acyclic garbage at once either way; cycles wait at most
YOUNG_INTERVAL (young generations) or FULL_INTERVAL (all generations)."""

from __future__ import annotations

import asyncio
import gc
import threading
import time

YOUNG_INTERVAL = 5.0  # seconds between collections of the young generations
FULL_INTERVAL = 60.0  # seconds between full collections


class ScheduledCollection:
    """Which collection is due: `step()` collects, and returns when to call it again."""

    def __init__(self) -> None:
        self.last_full = time.monotonic()

    def step(self) -> float:
        if time.monotonic() - self.last_full >= FULL_INTERVAL:
            gc.collect()
            self.last_full = time.monotonic()
        else:
            gc.collect(1)
        return YOUNG_INTERVAL


async def collect_in_loop() -> None:
    """For an event loop's process (the HTTP server): collections between requests."""
    schedule = ScheduledCollection()
    gc.disable()
    try:
        while True:
            await asyncio.sleep(YOUNG_INTERVAL)
            schedule.step()
    finally:
        gc.enable()


_thread: threading.Thread | None = None
_thread_lock = threading.Lock()


def collect_in_thread() -> None:
    """For an actor's process (its methods run on worker threads or an event loop it
    does not own): a daemon thread does the collections. Once per process."""
    global _thread
    with _thread_lock:
        if _thread is not None:
            return
        schedule = ScheduledCollection()

        def run() -> None:
            while True:
                time.sleep(schedule.step())

        gc.disable()
        _thread = threading.Thread(target=run, name="gc-schedule", daemon=True)
        _thread.start()
