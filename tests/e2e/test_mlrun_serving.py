"""Events produced and posted by MLRun's own serving code (MLRun 1.12.1 in its own virtual
environment, MLRUN_PYTHON; .ci/run installs it): a router with a V2ModelServer, model
tracking on, the monitoring stream pointed at the daemon over http with the token in the
URL, 50% sampling, some requests failing. No Content-Type, one JSON object per POST, an
endpoint id the daemon never saw: every event is accepted, the endpoint is created under
MLRun's id, and counts, errors and latency come out right."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from tests.e2e.conftest import ROOT

pytestmark = pytest.mark.e2e
MLRUN_PYTHON = os.environ.get("MLRUN_PYTHON", "")


@pytest.mark.skipif(not MLRUN_PYTHON, reason="MLRUN_PYTHON: a python with mlrun==1.12.1")
def test_mlrun_serving_events_are_accepted_and_counted(daemon):
    uid = "mlrun-api-endpoint-7f3a"
    url = f"http://mm:{daemon.token}@127.0.0.1:{daemon.port}/v1/events"
    done = subprocess.run(
        [MLRUN_PYTHON, str(ROOT / "tests" / "mlrun_serving.py"), url, uid, "60", "50"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(ROOT),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    posted = report["posted"]
    assert report["sent"]["errors"] == posted["error_events"] == 6
    assert 0 < posted["sampled_rows"] < report["sent"]["rows"]  # MLRun sampled the rows

    def settled():
        status, record = daemon.get(f"/v1/endpoints/{uid}")
        return record if status == 200 and record["events_total"] == posted["rows"] else None

    record = daemon.wait_for(settled, timeout=60)
    assert record["name"] == "churn" and record["project"] == "shop"
    assert record["model_class"] == "ChurnModel"
    assert record["error_count"] == posted["error_events"]
    # a 50%-sampled row stands for two predictions; error events are never sampled
    error_rows = posted["rows"] - posted["sampled_rows"]
    assert record["predictions_count_1h"] == 2 * posted["sampled_rows"] + error_rows
    assert record["latency_avg_1h"] is not None and record["latency_avg_1h"] >= 0
