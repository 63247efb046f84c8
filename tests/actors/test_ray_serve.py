"""A real Ray Serve application whose deployment is decorated with `@monitored`: its
predictions reach the real daemon (batched, in the background), a request is never
slowed or failed by logging, and a daemon that is down changes nothing for callers."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pytest
import ray

from modelmon_daemon.integrations.ray_serve import monitored
from tests.e2e.conftest import Daemon
from tests.ports import free_port

pytestmark = pytest.mark.actors


def make_app(uid: str, url: str, token: str):
    from ray import serve

    @serve.deployment(ray_actor_options={"num_cpus": 0})
    class Churn:
        @monitored(uid, url=url, token=token, flush_interval=0.2, batch_size=50)
        async def __call__(self, rows: list[list[float]]) -> list[int]:
            if rows and rows[0][0] < 0:
                raise ValueError("negative age")
            return [int(a + b > 1.0) for a, b in rows]

        def logged(self) -> dict[str, int]:
            from modelmon_daemon.integrations.ray_serve import _LOGGERS

            loggers = list(_LOGGERS.values())
            for logger in loggers:
                logger.flush(10)
            return {
                "sent": sum(lg.sent for lg in loggers),
                "failed": sum(lg.failed for lg in loggers),
                "dropped": sum(lg.dropped for lg in loggers),
            }

    return Churn.bind()


@pytest.fixture
def serve_instance(ray_cluster):
    from ray import serve

    serve.start(proxy_location="Disabled")
    yield serve
    serve.shutdown()


def test_a_serve_deployment_logs_its_predictions(serve_instance):
    serve = serve_instance
    data = Path(tempfile.mkdtemp(prefix="mms-", dir="/tmp"))
    daemon = Daemon(data, free_port(), []).start(timeout=120)
    try:
        status, _ = daemon.post(
            "/v1/endpoints",
            {
                "uid": "serve-churn",
                "project": "serve",
                "name": "churn",
                "feature_names": ["a", "b"],
            },
        )
        assert status == 201
        handle = serve.run(make_app("serve-churn", daemon.url, daemon.token), name="churn")
        rows_sent = 0
        for i in range(30):
            rows = [[(i % 7) / 7, (i % 3) / 3]] * (1 + i % 4)
            assert handle.remote(rows).result() == [int(a + b > 1.0) for a, b in rows]
            rows_sent += len(rows)
        with pytest.raises(ray.exceptions.RayTaskError):
            handle.remote([[-1.0, 0.0]]).result()  # the model's own error, not logging's
        counts = handle.logged.remote().result()
        assert counts == {"sent": rows_sent, "failed": 0, "dropped": 0}

        def arrived():
            _, record = daemon.get("/v1/endpoints/serve-churn")
            return record if record["events_total"] == rows_sent else None

        record = daemon.wait_for(arrived, timeout=60)
        assert record["latency_avg_1h"] is not None
        serve.delete("churn")

        # the daemon is down: requests still answer at once, the logger counts failures
        down = f"http://127.0.0.1:{free_port()}"
        handle = serve.run(make_app("serve-churn", down, daemon.token), name="down")
        started = time.perf_counter()
        for _ in range(10):
            assert handle.remote([[0.9, 0.9]]).result() == [1]
        assert time.perf_counter() - started < 5.0
        counts = handle.logged.remote().result()
        assert counts["failed"] == 10 and counts["sent"] == 0
    finally:
        daemon.stop()
