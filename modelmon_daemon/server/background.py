"""Long-lived tasks of an aiohttp app, for its cleanup_ctx: started on entry, cancelled
and awaited on exit (their CancelledError is theirs; anyone else's propagates)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

from modelmon_daemon.core.tasks import cancel_and_wait


@asynccontextmanager
async def running(work: Coroutine[Any, Any, None]) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.get_running_loop().create_task(work)
    try:
        yield task
    finally:
        await cancel_and_wait(task)
