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
