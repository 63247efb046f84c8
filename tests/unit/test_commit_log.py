"""The durability log's own thread (ThreadedCommitLog), on a real LMDB store, no Ray: a
failed commit answers every request of its group with the error and the log goes on;
stop writes what is queued; requests queued while a commit runs share the next one; a
thread that dies answers what it held and queued, and the log says it is not running."""

import asyncio
import threading

import numpy as np
import pytest

from modelmon_daemon.core.records import ColumnBatch, from_log_value
from modelmon_daemon.ingest.events import parse_native_events
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.wal import ThreadedCommitLog

NOW = 1_800_000_000.0


def rows(n: int, value: float = 1.0) -> ColumnBatch:
    return parse_native_events(
        {"inputs": np.full((n, 2), value).tolist(), "timestamps": [NOW - 5] * n},
        ["a", "b"],
        1,
        NOW,
    )


async def test_a_failed_commit_fails_its_requests_and_the_log_goes_on(tmp_path):
    store = LmdbStore(tmp_path, 64 << 20)
    forwarded: list[tuple[str, int, float, bytes]] = []
    fail_next = [True]

    def commit(records, specs, registered):
        if fail_next[0]:
            fail_next[0] = False
            raise OSError("disk on fire")
        return store.wal_append_values(records, specs, registered)

    async def forward(records):
        forwarded.extend(records)

    log = ThreadedCommitLog(commit, forward)
    await log.start()
    try:
        results = await asyncio.gather(
            log.append([("ep", NOW - 5, rows(3))], []),
            log.append([("ep", NOW - 5, rows(4))], []),
            return_exceptions=True,
        )
        assert [type(r) for r in results] == [OSError, OSError]  # one group, both refused
        assert log.queued_rows == 0 and store.wal_rows() == 0 and not forwarded
        await log.append([("ep", NOW - 5, rows(5))], [])  # the thread is still there
    finally:
        await log.stop()
    assert store.wal_rows() == 5 and log.committed_rows == 5 and log.commits == 1
    assert [len(ColumnBatch.from_wire(from_log_value(v)[1])) for *_, v in forwarded] == [5]
    store.close()


async def test_requests_queued_during_a_commit_share_the_next_and_stop_writes_them(tmp_path):
    store = LmdbStore(tmp_path, 64 << 20)
    inside, release = threading.Event(), threading.Event()
    groups: list[int] = []

    def commit(records, specs, registered):
        groups.append(sum(int(wire["n"]) for _, _, wire in records))
        if len(groups) == 1:
            inside.set()
            release.wait(10)
        return store.wal_append_values(records, specs, registered)

    async def forward(records):
        pass

    log = ThreadedCommitLog(commit, forward)
    await log.start()
    first = asyncio.ensure_future(log.append([("ep", NOW - 5, rows(1))], []))
    assert await asyncio.to_thread(inside.wait, 10)
    later = [asyncio.ensure_future(log.append([("ep", NOW - 5, rows(2))], [])) for _ in range(5)]
    await asyncio.sleep(0.05)  # all five queued behind the running commit
    stopping = asyncio.ensure_future(log.stop())
    await asyncio.sleep(0.05)
    with pytest.raises(RuntimeError, match="not running"):  # stopping: no new requests
        await log.append([("ep", NOW - 5, rows(1))], [])
    release.set()
    await asyncio.wait_for(asyncio.gather(first, *later, stopping), 10)
    assert groups == [1, 10]  # the queued five in one transaction, before the thread ended
    assert store.wal_rows() == 11 and log.queued_rows == 0
    # the statistics /v1/status and /metrics show: the first commit was held >= 50 ms
    stats = log.stats()
    assert (stats["commits"], stats["requests"], stats["rows"]) == (2, 6, 11)
    assert stats["requests_per_commit"] == 3.0
    assert stats["commit_seconds"] >= 0.1 and stats["mean_commit_ms"] >= 50
    assert stats["mean_commit_ms"] == 1e3 * stats["commit_seconds"] / 2
    store.close()


async def test_a_request_cancelled_while_it_waits_leaves_its_group_alone(tmp_path):
    """A handler cancelled while its commit runs (the daemon stopping) cancels only its
    own wait: the others of the group are answered, and every record is written."""
    store = LmdbStore(tmp_path, 64 << 20)
    inside, release = threading.Event(), threading.Event()

    def commit(records, specs, registered):
        inside.set()
        release.wait(10)
        return store.wal_append_values(records, specs, registered)

    forwarded: list[int] = []

    async def forward(records):
        forwarded.extend(len(ColumnBatch.from_wire(from_log_value(v)[1])) for *_, v in records)

    log = ThreadedCommitLog(commit, forward)
    await log.start()
    try:
        waits = [asyncio.ensure_future(log.append([("ep", NOW - 5, rows(n))], [])) for n in (2, 3)]
        assert await asyncio.to_thread(inside.wait, 10)
        waits[0].cancel()
        release.set()
        await asyncio.wait_for(waits[1], 10)
        assert waits[0].cancelled()
    finally:
        await log.stop()
    assert forwarded == [5] and store.wal_rows() == 5 and log.queued_rows == 0
    store.close()


class _ThreadKilled(BaseException):
    """What no `except Exception` catches: it ends the log's thread."""


async def _one_written_one_queued(log, writing, release) -> list:
    """A request being written (`writing` returns once it is), a second queued behind
    it, then the write released to end the log: both answers. Afterwards the log says it
    is not running, refuses appends, and stops at once."""
    await log.start()
    assert log.running()
    first = asyncio.ensure_future(log.append([("ep", NOW - 5, rows(1))], []))
    await writing()
    queued = asyncio.ensure_future(log.append([("ep", NOW - 5, rows(2))], []))
    await asyncio.sleep(0.05)  # queued behind the write that ends the log
    release()
    results = await asyncio.wait_for(asyncio.gather(first, queued, return_exceptions=True), 5)
    assert not log.running() and log.queued_rows == 0
    with pytest.raises(RuntimeError, match="not running"):
        await log.append([("ep", NOW - 5, rows(1))], [])
    await asyncio.wait_for(log.stop(), 5)
    return results


async def _nothing_forwarded(records):
    raise AssertionError("nothing was committed")


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")
async def test_a_log_whose_thread_died_says_so_and_leaves_no_request_hanging(tmp_path):
    entered = threading.Event()
    release = threading.Event()

    def commit(records, specs, registered):
        entered.set()
        release.wait(5)
        raise _ThreadKilled

    log = ThreadedCommitLog(commit, _nothing_forwarded)
    results = await _one_written_one_queued(
        log, lambda: asyncio.to_thread(entered.wait, 5), release.set
    )
    assert isinstance(results[0], _ThreadKilled)
    assert isinstance(results[1], RuntimeError) and "not running" in str(results[1])


async def test_a_group_commit_task_that_died_answers_what_it_held_and_queued():
    """The node ingestion servers' log (GroupCommitLog: an async append to the log owner):
    a task ended by what no `except Exception` catches answers the request it was
    writing and the ones queued behind it, says it is not running, and stops at once."""
    from modelmon_daemon.storage.wal import GroupCommitLog

    entered = asyncio.Event()
    release = asyncio.Event()

    async def append(records, specs, registered):
        entered.set()
        await release.wait()
        raise _ThreadKilled

    log = GroupCommitLog(append, _nothing_forwarded)
    results = await _one_written_one_queued(
        log, lambda: asyncio.wait_for(entered.wait(), 5), release.set
    )
    assert [type(r) for r in results] == [RuntimeError, RuntimeError], results
    assert all("not running" in str(r) for r in results)
