"""kill -9 of the whole daemon (its Ray included) while events stream in: after a restart
on the same data dir, every acknowledged event is stored once and analyzed once. And
kill -9 of the raylet of the Ray the daemon started: the daemon starts Ray again by
itself, with the same result."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tests.e2e.conftest import Daemon, http
from tests.helpers import stored_events
from tests.ports import free_port

pytestmark = pytest.mark.e2e
P = 30.0


def analyzed_windows(data):
    """The general_drift rows of endpoint dur in the results files."""
    results = pd.read_parquet(data / "results", filters=[("endpoint_id", "==", "dur")])
    return results[results["name"] == "general_drift"]


def register_dur(daemon, rows):
    """Endpoint dur: features a, b, the given reference rows."""
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "dur",
            "project": "p",
            "name": "dur",
            "feature_names": ["a", "b"],
            "reference": {"rows": rows},
        },
    )
    assert status == 201


def test_kill9_loses_and_duplicates_nothing_acknowledged(short_tmp):
    data = short_tmp / "durable"
    daemon = Daemon(data, free_port(), []).start()
    rng = np.random.default_rng(5)
    register_dur(daemon, rng.normal(size=(500, 2)).tolist())
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


def _raylet_of(pid: int) -> int:
    """The raylet the daemon's process started (a child of it)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            fields = stat[stat.rindex(")") + 2 :].split()
            if comm == "raylet" and int(fields[1]) == pid:
                return int(entry.name)
    raise AssertionError(f"no raylet under pid {pid}")


def test_a_lost_embedded_ray_is_started_again_and_nothing_acknowledged_is_lost(short_tmp):
    data = short_tmp / "raylost"
    daemon = Daemon(data, free_port(), []).start()
    try:
        register_dur(daemon, np.random.default_rng(1).normal(size=(200, 2)).tolist())
        first = (math.floor(time.time() / P) - 6) * P
        acked: list[str] = []

        def post(i: int) -> int:
            ids = [f"r{i}-{k}" for k in range(10)]
            status, _ = http(
                "POST",
                daemon.url + "/v1/endpoints/dur/events",
                {
                    "inputs": [[float(i), float(k)] for k in range(10)],
                    "timestamps": [first + i * 3.0 + k * 0.1 for k in range(10)],
                    "request_ids": ids,
                },
                timeout=5,
                token=daemon.token,
            )
            if status == 202:
                acked.extend(ids)
            return status

        assert all(post(i) == 202 for i in range(20))  # six windows of history
        before = json.loads((data / "daemon.json").read_text())
        os.kill(_raylet_of(daemon.proc.pid), signal.SIGKILL)
        # events keep coming while Ray is gone: those acknowledged are durable; while the
        # daemon restarts its HTTP server is down (the connection is refused)
        for i in range(20, 40):
            try:
                post(i)
            except OSError:
                pass
            time.sleep(0.5)

        def restarted():
            try:  # the file is gone while the daemon restarts
                info = json.loads((data / "daemon.json").read_text())
                return info["gcs_address"] != before["gcs_address"] and (
                    daemon.get("/healthz")[0] == 200
                )
            except OSError:
                return False

        daemon.wait_for(restarted, timeout=120, interval=1.0)
        assert daemon.proc.poll() is None  # the same process, its image replaced
        assert json.loads((data / "daemon.json").read_text())["pid"] == daemon.proc.pid
        for i in range(40, 45):
            assert post(i) == 202

        def settled():
            _, status = daemon.get("/v1/status")
            _, record = daemon.get("/v1/endpoints/dur")
            return status["wal_records"] == 0 and record["buffered_events"] == 0

        daemon.wait_for(settled, timeout=90)
        events = stored_events(data, "dur")
        stored = events["request_id"].tolist()
        assert len(stored) == len(set(stored)), "an event was stored twice"
        assert set(acked) <= set(stored), "an acknowledged event was lost"
        assert len(acked) >= 250  # before the kill, during the outage, and after it
        drift = analyzed_windows(data)
        assert drift["start"].is_unique, "a window was analyzed twice"
        _, record = daemon.get("/v1/endpoints/dur")
        assert int(drift["sample_size"].sum()) + record["late_events"] == len(stored)
    finally:
        daemon.stop()
