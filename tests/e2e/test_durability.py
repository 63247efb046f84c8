"""kill -9 of the whole daemon (its Ray included) while events stream in: after a restart
on the same data dir, every acknowledged event is stored once and analyzed once."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pandas as pd
import pytest

from tests.e2e.conftest import Daemon, free_port, http
from tests.helpers import stored_events

pytestmark = pytest.mark.e2e
P = 30.0


def analyzed_windows(data):
    """The general_drift rows of endpoint dur in the results files."""
    results = pd.read_parquet(data / "results", filters=[("endpoint_id", "==", "dur")])
    return results[results["name"] == "general_drift"]


def test_kill9_loses_and_duplicates_nothing_acknowledged(short_tmp):
    data = short_tmp / "durable"
    daemon = Daemon(data, free_port(), []).start()
    rng = np.random.default_rng(5)
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "dur",
            "project": "p",
            "name": "dur",
            "feature_names": ["a", "b"],
            "reference": {"rows": rng.normal(size=(500, 2)).tolist()},
        },
    )
    assert status == 201
    first = (math.floor(time.time() / P) - 40) * P  # 40 windows of history, sent in order
    acked: list[str] = []
    sent: list[str] = []
    stop = threading.Event()

    def post_forever():
        i = 0
        while not stop.is_set() and i < 1000:  # event times stay in the past
            ids = [f"q{i}-{k}" for k in range(20)]
            ts = [first + (i * 20 + k) * 0.05 for k in range(20)]  # 30 requests per window
            sent.extend(ids)
            try:
                status, _ = http(
                    "POST",
                    daemon.url + "/v1/endpoints/dur/events",
                    {
                        "inputs": rng.normal(size=(20, 2)).tolist(),
                        "timestamps": ts,
                        "request_ids": ids,
                    },
                    timeout=5,
                    token=daemon.token,
                )
            except OSError:
                return
            if status == 202:
                acked.extend(ids)
            i += 1

    poster = threading.Thread(target=post_forever)
    poster.start()
    deadline = time.time() + 30
    while time.time() < deadline:  # kill once some windows were committed, mid-stream
        if list((data / "results").rglob("*.parquet")) and len(acked) > 4000:
            break
        time.sleep(0.2)
    daemon.kill9()
    stop.set()
    poster.join(timeout=30)
    assert acked, "nothing was acknowledged before the kill"
    committed_before = len(analyzed_windows(data))

    daemon = Daemon(data, daemon.port, []).start()
    try:
        seen = {}

        def settled():
            _, seen["status"] = daemon.get("/v1/status")
            _, seen["record"] = daemon.get("/v1/endpoints/dur")
            return seen["status"]["wal_records"] == 0 and seen["record"]["buffered_events"] == 0

        try:
            daemon.wait_for(settled, timeout=90)
        except AssertionError:
            raise AssertionError(f"not settled: {seen}") from None
        events = stored_events(data, "dur")
        stored = events["request_id"].tolist()
        assert len(stored) == len(set(stored)), "an event was stored twice"
        assert set(acked) <= set(stored), (
            f"{len(set(acked) - set(stored))} acknowledged events lost"
        )
        assert set(stored) <= set(sent)
        drift = analyzed_windows(data)
        assert drift["start"].is_unique, "a window was analyzed twice"
        assert len(drift) > committed_before, "no window was left to analyze after the restart"
        assert int(drift["sample_size"].sum()) + daemon.get("/v1/endpoints/dur")[1][
            "late_events"
        ] == len(stored)
        _, record = daemon.get("/v1/endpoints/dur")
        assert record["events_total"] == len(stored)
    finally:
        daemon.stop()
