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


# MLRun's HTTP monitoring payloads in the forms its translation reads (ProcessHTTPEvent)
SCHEMAS = {"user-ep-1": [["age", "income"], ["churned"]]}
PAYLOADS = [
    {"inputs": [[41.0, 1.5], [50.0, 2.5]], "outputs": [1, 0], "latency": 120},
    {"inputs": [41.0, 1.5], "outputs": 1, "request_id": "q-1"},
    {"inputs": {"age": [41.0, 50.0], "income": [1.5, 2.5]}, "outputs": {"churned": [1, 0]}},
    {"inputs": {"income": 1.5, "age": 41.0, "other": 3}, "outputs": [0]},
    {"inputs": [{"age": 41.0, "income": 1.5}, {"income": 2.5, "age": 50.0}], "outputs": [1, 1]},
]
NEW_ENDPOINT = {
    "model_endpoint_uid": "user-ep-2",
    "model_endpoint_name": "fraud",
    "inputs": [{"amount (usd)": 10.0, "hour": 3}, {"amount (usd)": 99.0, "hour": 4}],
    "outputs": {"label": [0, 1], "proba": [0.1, 0.8]},
}


def mlrun_translation(payloads):
    given = json.dumps({"schemas": SCHEMAS, "payloads": payloads})
    done = subprocess.run(
        [MLRUN_PYTHON, str(ROOT / "tests" / "mlrun_http_payloads.py")],
        input=given,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(ROOT),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not MLRUN_PYTHON, reason="MLRUN_PYTHON: a python with mlrun==1.12.1")
def test_mlrun_http_payloads_are_read_as_mlruns_own_translation_reads_them(daemon):
    """The same payloads through MLRun's own ProcessHTTPEvent and through the daemon
    (posted to /v1/events): the rows, outputs and column names the daemon stores are the
    ones MLRun's translation gives, and a new endpoint is named by the payload's keys."""
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "user-ep-1",
            "project": "shop",
            "name": "churn",
            "feature_names": SCHEMAS["user-ep-1"][0],
            "label_names": SCHEMAS["user-ep-1"][1],
        },
    )
    assert status == 201
    payloads = [
        {"model_endpoint_uid": "user-ep-1", "model_endpoint_name": "churn", **p} for p in PAYLOADS
    ]
    theirs = mlrun_translation([*payloads, NEW_ENDPOINT])
    for i, p in enumerate(payloads):
        status, body = daemon.post("/v1/events", {**p, "request_id": f"p{i}"})
        assert status == 202, body
        assert (body["status"], body["endpoint_id"], body["endpoint_name"]) == (
            "accepted",
            "user-ep-1",
            "churn",
        )
    status, body = daemon.post("/v1/events", [NEW_ENDPOINT])
    assert status == 202 and body["rows"] == 2, body

    expected_rows = [row for t in theirs[:-1] for row in _rows(t["request"]["inputs"])]
    expected_outputs = [o for t in theirs[:-1] for o in _outputs(t["resp"]["outputs"])]

    def stored():
        _, body = daemon.get("/v1/endpoints/user-ep-1/events")
        return body if body["rows"] == len(expected_rows) else None

    events = daemon.wait_for(stored, timeout=90)["events"]
    got_rows = [list(row) for row in zip(events["age"], events["income"], strict=True)]
    assert sorted(got_rows) == sorted(expected_rows)
    assert sorted(events["churned"]) == sorted(float(o) for o in expected_outputs)
    _, record = daemon.get("/v1/endpoints/user-ep-2")
    assert record["feature_names"] == theirs[-1]["request"]["input_schema"]
    assert record["label_names"] == theirs[-1]["resp"]["output_schema"]


def _rows(inputs):
    return inputs if isinstance(inputs[0], list) else [inputs]


def _outputs(outputs):
    return [o[0] if isinstance(o, list) else o for o in outputs]


@pytest.mark.skipif(not MLRUN_PYTHON, reason="MLRUN_PYTHON: a python with mlrun==1.12.1")
def test_mlrun_flow_serving_events_are_accepted_and_named(daemon):
    """MLRun's flow serving (a ModelRunnerStep graph; its MonitoringPreProcessor builds the
    events, with `microsec` in float seconds and the model's input schema when the request
    sends records): every row is stored under MLRun's uid, the features are named as the
    model's inputs, and the latency is the microseconds MLRun measured."""
    import hashlib

    url = f"http://mm:{daemon.token}@127.0.0.1:{daemon.port}/v1/events"
    done = subprocess.run(
        [MLRUN_PYTHON, str(ROOT / "tests" / "mlrun_flow_serving.py"), url, "20"],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=str(ROOT),
    )
    assert done.returncode == 0, done.stderr[-3000:]
    sent = json.loads(done.stdout.strip().splitlines()[-1])["sent"]
    uid = hashlib.sha1(b"shop_flow-serving_N/A_churn_latest").hexdigest()

    def settled():
        status, record = daemon.get(f"/v1/endpoints/{uid}")
        return record if status == 200 and record["events_total"] == sent["rows"] else None

    record = daemon.wait_for(settled, timeout=60)
    assert record["feature_names"] == ["age", "income"]
    assert record["model_class"] == "ChurnModel" and record["function_uri"] == "shop/flow-serving"
    assert 0 < record["latency_avg_1h"] < 1e6  # microseconds, from MLRun's float seconds

    def stored():
        _, body = daemon.get(f"/v1/endpoints/{uid}/events")
        return body if body["rows"] == sent["rows"] else None

    stored_events = daemon.wait_for(stored, timeout=90)["events"]
    assert sum(stored_events["output"]) == sent["positives"]
