"""The hand-off of logged records to stream actors (server/directory.py): every record
exactly once, in few calls, and within the call budget however many actors are busy."""

import asyncio

from modelmon_daemon.server import directory as directory_module
from modelmon_daemon.server.directory import ActorDirectory
from tests.fakes import FakeHandle
from tests.helpers import make_batch


class Stream:
    def __init__(self) -> None:
        self.calls: list[list] = []

    def ingest_many(self, groups):
        self.calls.append(groups)


async def test_records_to_many_busy_stream_actors_arrive_once_within_the_call_budget(
    monkeypatch,
):
    monkeypatch.setattr(directory_module, "FORWARD_CALLS_PER_S", 400.0)  # a short test
    streams = {f"s{i}": Stream() for i in range(20)}
    directory = ActorDirectory(None, None, [], lambda name: FakeHandle(streams[name]))
    directory.routes = {f"ep{i}": f"s{i % 20}" for i in range(100)}
    batch = make_batch([1.0], [[0.0, 0.0]])
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    for burst in range(5):  # 100 endpoints logged at once, five times
        await asyncio.gather(
            *(directory.forward([(f"ep{i}", burst * 100 + i, 0.0, batch)]) for i in range(100))
        )
    elapsed = loop.time() - t0
    got = sorted(
        r[1] for s in streams.values() for call in s.calls for recs, _ in call for r in recs
    )
    assert got == list(range(500))  # each once
    calls = sum(len(s.calls) for s in streams.values())
    assert calls == 5 * 20  # one call per actor per burst: the endpoints of a burst share it
    # 20 actors busy at once: each waits 20 / FORWARD_CALLS_PER_S, not FORWARD_LINGER
    assert elapsed >= 0.9 * calls / directory_module.FORWARD_CALLS_PER_S
    assert directory.linger() == directory_module.FORWARD_LINGER  # none busy now


async def test_no_record_waits_longer_than_the_longest_linger():
    directory = ActorDirectory(None, None, [], lambda name: None)
    never = asyncio.get_running_loop().create_future()
    directory._senders = {f"s{i}": never for i in range(1000)}  # 1000 actors busy
    assert directory.linger() == directory_module.FORWARD_LINGER_MAX
    never.cancel()
