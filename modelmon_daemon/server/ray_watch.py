"""The embedded Ray's node, watched from the daemon's process.

A daemon that started its own Ray (no `--ray-address`) runs every actor on that one node.
If the node goes (its raylet killed, say), Ray cannot bring any actor back, and the
daemon would keep acknowledging events that nothing analyzes. The watch notices the node
is gone and the daemon then restarts Ray and its actors, which rebuild their state from
LMDB, as after a restart of the whole daemon.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

PROBE_INTERVAL_S = 5.0
PROBE_TIMEOUT_S = 10.0  # a probe that has no answer by then counts as a miss
MISSES_TO_LOSE = 3  # consecutive misses before the node counts as gone


@dataclass
class NodeLiveness:
    """Consecutive failed probes; the node is lost after `misses_to_lose` in a row, so a
    slow answer under load is not taken for a dead node."""

    misses_to_lose: int = MISSES_TO_LOSE
    misses: int = 0

    def update(self, alive: bool) -> bool:
        """Record one probe; True once the node counts as lost."""
        self.misses = 0 if alive else self.misses + 1
        return self.misses >= self.misses_to_lose


async def probe(check: Callable[[], bool], wait_s: float) -> bool:
    """`check()` on a thread of its own, False if it raises or has not answered within
    `wait_s` seconds: a Ray call to a dead cluster can hang, and a daemon thread left behind
    must not hold up the event loop's shutdown (as an executor's thread would)."""
    loop = asyncio.get_running_loop()
    answer: asyncio.Future[bool] = loop.create_future()

    def settle(value: bool) -> None:
        if not answer.done():
            answer.set_result(value)

    def work() -> None:
        try:
            value = bool(check())
        except Exception:
            value = False
        try:
            loop.call_soon_threadsafe(settle, value)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=work, name="modelmon-ray-probe", daemon=True).start()
    try:
        return await asyncio.wait_for(answer, wait_s)
    except TimeoutError:
        return False


async def watch_node(
    check: Callable[[], bool],
    on_lost: Callable[[], None],
    interval: float = PROBE_INTERVAL_S,
    probe_wait_s: float = PROBE_TIMEOUT_S,
    liveness: NodeLiveness | None = None,
) -> None:
    """Probe every `interval` seconds; call `on_lost()` once the node counts as lost."""
    liveness = liveness or NodeLiveness()
    while True:
        await asyncio.sleep(interval)
        if liveness.update(await probe(check, probe_wait_s)):
            log.error(
                "the embedded Ray's node is gone (%d probes without it): restarting Ray",
                liveness.misses,
            )
            on_lost()
            return


def local_node_alive(node_id: str) -> bool:
    """Whether Ray lists the node `node_id` as alive."""
    import ray

    return any(node.get("NodeID") == node_id and node.get("Alive") for node in ray.nodes())
