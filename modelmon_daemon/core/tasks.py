"""Stopping a long-lived asyncio task without swallowing anyone else's cancellation."""

from __future__ import annotations

import asyncio
from typing import Any


async def cancel_and_wait(task: asyncio.Task[Any]) -> None:
    """Cancel `task` and wait until it has finished. Its own CancelledError ends here; the
    caller's (cancelled itself while it waits) propagates, and so does any other error
    the task raises on its way out."""
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise
