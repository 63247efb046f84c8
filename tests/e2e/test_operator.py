"""The operator surface against the real daemon: the Python client, the HTML report and
its images, endpoint queries from the CLI."""

from __future__ import annotations

import base64
import math
import re
import time

import numpy as np
import pandas as pd
import pytest

from modelmon_daemon import Client
from modelmon_daemon.core.times import iso
from tests.e2e.conftest import Daemon
from tests.ports import free_port

pytestmark = pytest.mark.e2e
P = 30.0


def test_python_client_report_and_queries(daemon, tmp_path):
    client = Client(daemon.url, token=daemon.token)
    rng = np.random.default_rng(8)
    reference = pd.DataFrame(rng.normal(size=(800, 2)), columns=["x", "y"])
    record = client.register_endpoint(
        project="ops", name="client-ep", uid="client-ep", reference=reference
    )
    assert record["feature_names"] == ["x", "y"]
    first = (math.floor(time.time() / P) - 3) * P
    ts = pd.to_datetime(first + np.linspace(0, 2 * P - 1, 400), unit="s", utc=True)
    current = pd.DataFrame(rng.normal(size=(400, 2)), columns=["x", "y"])
    current.iloc[200:, :] += 3.0
    current.iloc[7, 1] = np.nan
    accepted = client.log_events(
        "client-ep",
        current,
        outputs=rng.integers(0, 2, 400),
        timestamps=ts,
        latency_us=np.full(400, 2500.0),
        request_ids=[f"c{i}" for i in range(400)],
        batch_size=150,
    )
    assert accepted == 400
    assert client.log_labels("client-ep", ["c1", "c2"], [1, 0]) == 2

    def analyzed():
        frame = client.results_frame(
            "client-ep", application="histogram-data-drift", name="general_drift"
        )
        return len(frame) == 2

    daemon.wait_for(analyzed)
    frame = client.results_frame(
        "client-ep", application="histogram-data-drift", name="general_drift"
    )
    assert str(frame["start"].dt.tz) == "UTC"
    assert [t.timestamp() for t in frame["start"]] == [first, first + P]

    out = daemon.cli("report", "client-ep", "--out", str(tmp_path / "report.html"))
    assert out.returncode == 0, out.stderr
    page = (tmp_path / "report.html").read_text()
    images = re.findall(r'<img alt="([^"]+)" src="data:image/png;base64,([^"]+)"', page)
    assert {alt for alt, _ in images} == {"drift", "operations", "feature:x", "feature:y"}
    for _, data in images:
        assert base64.b64decode(data)[:8] == b"\x89PNG\r\n\x1a\n"
    assert "general_drift" in page and "detected" in page
    png = tmp_path / "x.png"
    out = daemon.cli("report", "client-ep", "--png", "feature:x", "--out", str(png))
    assert out.returncode == 0 and png.read_bytes()[:4] == b"\x89PNG"
    out = daemon.cli("report", "client-ep", "--png", "nope", "--out", str(png))
    assert out.returncode == 2 and "feature:x" in out.stderr

    shown = daemon.cli("endpoints", "show", "client-ep")
    assert shown.returncode == 0 and '"uid": "client-ep"' in shown.stdout
    listing = daemon.cli("endpoints", "--json")
    assert any(e["uid"] == "client-ep" for e in __import__("json").loads(listing.stdout))


def test_retention_expires_past_days_at_maintenance_and_keeps_recent_ones(short_tmp):
    """storage.retention as an operator runs it: back-filled history older than the
    retention is analyzed and stored like any other, and its day's Parquet partitions go
    at the next storage maintenance, which the controller asks for after a tick (here the
    first tick of a restarted daemon: an idle one); a recent day's files stay."""
    settings = ["--set", "storage.retention=1d", "--set", "storage.maintenance_interval=1h"]
    daemon = Daemon(short_tmp / "retention", free_port(), settings).start()
    recent = (math.floor(time.time() / P) - 3) * P
    old = recent - 3 * 86400.0
    try:
        status, record = daemon.post(
            "/v1/endpoints",
            {
                "uid": "kept-1",
                "project": "ops",
                "name": "kept",
                "feature_names": ["x"],
                "reference": {"rows": [[float(v)] for v in range(40)]},
            },
        )
        assert status == 201, record
        for start, tag in ((old, "old"), (recent, "new")):
            status, body = daemon.post(
                "/v1/endpoints/kept-1/events",
                {
                    "inputs": [[1.0], [2.0]],
                    "timestamps": [start + 1, start + 2],
                    "request_ids": [f"{tag}-0", f"{tag}-1"],
                },
            )
            assert (status, body) == (202, {"accepted": 2})

        def analyzed():
            _, record = daemon.get("/v1/endpoints/kept-1")
            # the frontier, past the recent window (a quiet endpoint's moves on over empty ones)
            frontier = record["last_analyzed"].get("histogram-data-drift") or ""
            return frontier >= str(iso(recent + P))

        daemon.wait_for(analyzed)
        assert daemon.get("/v1/endpoints/kept-1")[1]["events_total"] == 4
    finally:
        daemon.stop()
    old_day = f"date={time.strftime('%Y-%m-%d', time.gmtime(old))}"
    new_day = f"date={time.strftime('%Y-%m-%d', time.gmtime(recent))}"

    def files(top, day):
        return list((daemon.data_dir / top / day).rglob("*.parquet"))

    # maintenance ran at the first tick, before these windows, and is not due for an hour
    assert files("events", old_day) and files("results", old_day)
    daemon.start()  # a restarted daemon asks at its first tick, though it has no window
    try:
        daemon.wait_for(lambda: not (daemon.data_dir / "events" / old_day).exists())
        assert not (daemon.data_dir / "results" / old_day).exists()
        assert files("events", new_day) and files("results", new_day)
        _, results = daemon.get("/v1/endpoints/kept-1/results?name=general_drift")
        assert [r["start"] for r in results["results"]] == [iso(recent)]
    finally:
        daemon.stop()
