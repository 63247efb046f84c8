"""Backpressure at ingestion speed: rows logged but still on their way to the stream
actors are bounded; past the bound the daemon answers 503 with Retry-After (and accepts
again once the hand-off catches up). Real LMDB log, no Ray: the forward is a coroutine."""

import asyncio

import numpy as np
import pytest

from modelmon_daemon.config import Settings
from modelmon_daemon.core.errors import Overloaded
from modelmon_daemon.core.records import ColumnBatch, from_log_value
from modelmon_daemon.ingest.events import parse_native_events
from modelmon_daemon.server.ingest_routes import check_capacity
from modelmon_daemon.server.state import IngestServices
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.wal import ThreadedCommitLog

NOW = 1_800_000_000.0


def rows(n: int):
    return parse_native_events(
        {"inputs": np.ones((n, 2)).tolist(), "timestamps": [NOW - 5] * n}, ["a", "b"], 1, NOW
    )


async def test_rows_stuck_on_their_way_to_stream_actors_answer_503(tmp_path):
    store = LmdbStore(tmp_path, 64 << 20)
    release = asyncio.Event()
    delivered: list[int] = []

    async def stream_actors_behind(records):
        await release.wait()
        # records reach the stream actors as the log stores them
        delivered.extend(len(ColumnBatch.from_wire(from_log_value(v)[1])) for *_, v in records)

    log = ThreadedCommitLog(store.wal_append_values, stream_actors_behind)
    settings = Settings()
    settings.daemon.max_forwarding_rows = 1000
    settings.daemon.max_pending_rows = 10**9
    services = IngestServices(settings=settings, log=log)
    await log.start()
    try:
        await log.append([("ep", NOW - 5, rows(600))], [])
        check_capacity(services)  # 600 on their way: still accepted
        await log.append([("ep", NOW - 5, rows(600))], [])
        with pytest.raises(Overloaded) as refused:
            check_capacity(services)
        assert refused.value.status == 503
        assert refused.value.headers["Retry-After"] == "1"
        assert "daemon.max_forwarding_rows" in str(refused.value)
        release.set()
        for _ in range(100):
            if log.forwarding_rows == 0:
                break
            await asyncio.sleep(0.01)
        check_capacity(services)  # caught up: accepted again
        assert sum(delivered) == 1200 and store.wal_rows() == 1200  # durable meanwhile
    finally:
        await log.stop()
        store.close()


class _FailingOwner:
    """The labels' owner as a Ray call that failed: the remote error wrapped by Ray."""

    async def log_labels(self, *args):
        from ray.exceptions import RayTaskError

        cause = OSError("When uploading part for key 'labels/x': connection refused")
        raise RayTaskError("log_labels", "Traceback ...", cause).as_instanceof_cause()


@pytest.mark.parametrize(
    ("in_flight", "owner", "code", "retry_after", "message"),
    [
        ("max", None, "busy", "1", "label requests"),
        (0, None, "unavailable", "5", "the daemon is starting or stopping"),
        (0, _FailingOwner(), "unavailable", "5", "durable: OSError: When uploading part"),
    ],
)
async def test_label_requests_that_cannot_be_stored_now_say_when_to_retry(
    in_flight, owner, code, retry_after, message
):
    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from modelmon_daemon.server.ingest_routes import MAX_LABEL_REQUESTS, post_labels
    from modelmon_daemon.server.middleware import api_middleware
    from modelmon_daemon.server.state import INGEST
    from tests.helpers import make_spec

    services = IngestServices(settings=Settings(), token="t", specs={"ep": make_spec("ep")})
    # as many as the owner is working on, or none
    services.labels_in_flight = MAX_LABEL_REQUESTS if in_flight == "max" else in_flight
    services.owner_state = owner
    app = web.Application(middlewares=[api_middleware])
    app[INGEST] = services
    app.router.add_post("/v1/endpoints/{uid}/labels", post_labels)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post(
            "/v1/endpoints/ep/labels",
            json={"request_ids": ["r1"], "labels": [1]},
            headers={"Authorization": "Bearer t"},
        )
        assert resp.status == 503 and resp.headers["Retry-After"] == retry_after
        error = (await resp.json())["error"]
        assert error["code"] == code and message in error["message"], error
        assert error["details"]["retry_after_s"] == int(retry_after)
    assert services.labels_in_flight == (MAX_LABEL_REQUESTS if in_flight == "max" else 0)
