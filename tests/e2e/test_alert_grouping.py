"""One drifting window of one endpoint with every built-in application on: several
results fire (general_drift, drifted_features_share, reconstruction_error, ...), and each
channel gets exactly one notification listing all of them."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from tests.receivers import HttpReceiver

pytestmark = pytest.mark.e2e
P = 30.0


def test_one_notification_per_alert_endpoint_and_window(daemon):
    web = HttpReceiver().start()
    try:
        alert = {
            "name": "grouped",
            "entities": {"kind": "model-endpoint-result", "ids": ["grouped-ep"]},
            "trigger": {"events": ["*-detected", "*-suspected"]},
            "cooldown": "1h",
            "notifications": [{"kind": "webhook", "url": web.url + "/hook"}],
        }
        assert daemon.post("/v1/alerts", alert)[0] == 201
        rng = np.random.default_rng(9)
        reference = rng.normal(size=(2000, 4))
        status, _ = daemon.post(
            "/v1/endpoints",
            {
                "uid": "grouped-ep",
                "project": "grp",
                "name": "grouped",
                "feature_names": ["a", "b", "c", "d"],
                "reference": {"rows": reference.tolist()},
            },
        )
        assert status == 201
        start = (math.floor(time.time() / P) - 3) * P
        rows = rng.normal(6.0, 3.0, size=(300, 4))  # every feature far out of range
        status, _ = daemon.post(
            "/v1/endpoints/grouped-ep/events",
            {"inputs": rows.tolist(), "timestamps": (start + np.linspace(0, P - 1, 300)).tolist()},
        )
        assert status == 202

        def delivered():
            _, body = daemon.get("/v1/alerts/grouped/events")
            return [e for e in body["events"] if e["action"] == "delivered"]

        daemon.wait_for(delivered, timeout=90)
        time.sleep(2.0)  # nothing else may follow
        (post,) = web.on("/hook")
        fired = post["json"]["results"]
        names = {f"{r['application']}.{r['name']}" for r in fired}
        assert len(fired) >= 3, names
        assert "histogram-data-drift.general_drift" in names
        # every one detected: MLRun's general_drift heads the message
        assert {r["status"] for r in fired} == {2}
        assert (post["json"]["event"]["application"], post["json"]["event"]["name"]) == (
            "histogram-data-drift",
            "general_drift",
        )
        assert post["json"]["event"]["endpoint_id"] == "grouped-ep"
        assert f"{len(fired)} result(s) fired" in post["json"]["message"]
    finally:
        daemon.delete("/v1/alerts/grouped")
        web.stop()
