"""The watch on the embedded Ray's node: a lost node is declared after consecutive
failed probes only, and a probe that hangs or raises counts as failed."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from modelmon_daemon.server.daemon import _child_pids
from modelmon_daemon.server.ray_watch import NodeLiveness, probe, watch_node


def test_the_node_is_lost_after_consecutive_misses_only():
    liveness = NodeLiveness(misses_to_lose=3)
    answers = [False, False, True, False, False, True, False, False, False]
    lost = [liveness.update(a) for a in answers]
    assert lost == [False] * 8 + [True]


async def test_a_probe_that_hangs_or_raises_is_a_miss():
    assert await probe(lambda: True, 1.0) is True
    assert await probe(lambda: False, 1.0) is False

    def hangs() -> bool:
        time.sleep(0.5)
        return True

    def raises() -> bool:
        raise RuntimeError("the cluster is gone")

    t0 = time.perf_counter()
    assert await probe(hangs, 0.05) is False
    assert time.perf_counter() - t0 < 0.4  # not held up by the thread
    assert await probe(raises, 1.0) is False


async def test_watch_calls_on_lost_once_after_the_third_miss_in_a_row():
    answers = iter([True, False, True, False, False, False, True])
    probes: list[int] = []
    lost: list[int] = []

    def check() -> bool:
        probes.append(1)
        return next(answers)

    await asyncio.wait_for(
        watch_node(check, lambda: lost.append(len(probes)), interval=0.001, probe_wait_s=1.0),
        timeout=5,
    )
    assert lost == [6]  # True, False, True, then three misses


def test_child_pids_lists_the_processes_this_one_started():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert child.pid in _child_pids(os.getpid())
        assert os.getpid() not in _child_pids(os.getpid())
    finally:
        child.kill()
        child.wait()
