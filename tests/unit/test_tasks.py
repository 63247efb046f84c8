"""cancel_and_wait: the stopped task's CancelledError ends there; the caller's does not."""

from __future__ import annotations

import asyncio

import pytest

from modelmon_daemon.core.tasks import cancel_and_wait
from modelmon_daemon.server.background import running


async def test_the_task_is_stopped_and_its_cancellation_ends_there():
    cleaned = asyncio.Event()

    async def forever():
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    task = asyncio.create_task(forever())
    await asyncio.sleep(0)
    await cancel_and_wait(task)
    assert task.cancelled() and cleaned.is_set()


async def test_the_callers_own_cancellation_propagates():
    """The caller is cancelled while the task takes its time to stop: the caller's
    CancelledError is not swallowed (the old `except CancelledError: pass` did)."""

    async def slow_to_stop():
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.shield(asyncio.sleep(0.2))

    inner = asyncio.create_task(slow_to_stop())
    after = []

    async def stopper():
        await cancel_and_wait(inner)
        after.append("went on")  # must not run: this task was cancelled

    outer = asyncio.create_task(stopper())
    await asyncio.sleep(0.05)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert after == [] and outer.cancelled()


async def test_an_error_raised_on_the_way_out_propagates():
    async def fails_on_cancel():
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="cleanup failed"):
        await cancel_and_wait(task)


async def test_running_stops_its_task_on_exit():
    async def forever():
        await asyncio.Event().wait()

    async with running(forever()) as task:
        await asyncio.sleep(0)
        assert not task.done()
    assert task.cancelled()
