"""What users really send, over HTTP: absurd times are refused naming the field and
leave every read path working; one-element output rows are values; labels of an endpoint
registered without model_type are scored (the type inferred); bad alert fields are 400."""

from __future__ import annotations

import math
import time

import msgpack
import pytest

pytestmark = pytest.mark.e2e
P = 30.0


def register(daemon, uid, **extra):
    status, body = daemon.post(
        "/v1/endpoints",
        {
            "uid": uid,
            "project": "bad",
            "name": uid,
            "feature_names": ["a", "b"],
            "reference": {"rows": [[float(i % 7), float(i % 5)] for i in range(300)]},
            **extra,
        },
    )
    assert status in (200, 201), body


@pytest.mark.parametrize("ts", [1e19, -1e15, -1, "9999-12-31T00:00:00Z", time.time() + 2 * 86400])
def test_absurd_native_timestamps_are_refused_naming_the_row(daemon, ts):
    register(daemon, "poison")
    now = time.time()
    status, body = daemon.post(
        "/v1/endpoints/poison/events",
        {"inputs": [[1.0, 2.0], [3.0, 4.0]], "timestamps": [now, ts]},
    )
    assert status == 400, body
    assert body["error"]["details"] == {"index": 1, "field": "timestamps"}


@pytest.mark.parametrize("when", ["9999-12-31 00:00:00.000000", "1969-12-31 23:59:59.000000"])
def test_absurd_mlrun_times_are_refused(daemon, when):
    event = {
        "endpoint_id": "poison-mlrun",
        "function_uri": "bad/serving",
        "model": "m",
        "request": {"id": "p1", "inputs": [[1.0, 2.0]]},
        "resp": {"outputs": [1]},
        "when": when,
    }
    status, body = daemon.post("/v1/events", [event, {**event, "when": when}])
    assert status == 400 and body["error"]["details"] == {"index": 0, "field": "when"}


def test_read_paths_survive_poison_attempts(daemon):
    for ts in (1e19, -1e15, "9999-12-31"):
        daemon.post("/v1/endpoints/poison/events", {"inputs": [[1.0, 2.0]], "timestamps": [ts]})
    assert daemon.get("/v1/endpoints")[0] == 200
    assert daemon.get("/v1/endpoints/poison")[0] == 200
    import urllib.request

    with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as resp:
        assert resp.status == 200
    for query in ("start=1e300", "end=-1e300", "start=9999999999999", "start=nan", "end=inf"):
        status, body = daemon.get(f"/v1/endpoints/poison/results?{query}")
        assert status == 400, (query, body)
        assert body["error"]["details"]["field"] in ("start", "end")


@pytest.mark.parametrize(
    ("outputs", "field"),
    [
        ([{"a": 1}], "resp.outputs"),
        ([[1, 2]], "resp.outputs[0]"),
        ([float("inf")], "resp.outputs"),
    ],
)
def test_odd_outputs_are_refused(daemon, outputs, field):
    event = {
        "endpoint_id": "odd-out",
        "function_uri": "bad/serving",
        "model": "m",
        "request": {"id": "o1", "inputs": [[1.0, 2.0]]},
        "resp": {"outputs": outputs},
    }
    register(daemon, "odd-out")
    status, body = daemon.post(
        "/v1/events", msgpack.packb([event]), content_type="application/msgpack"
    )
    assert status == 400, body
    assert body["error"]["details"]["field"] == field


def test_msgpack_extension_types_and_bytes_are_refused(daemon):
    register(daemon, "odd-ext")
    ext = msgpack.packb({"inputs": [[1.0, msgpack.ExtType(5, b"x")]]})
    status, body = daemon.post(
        "/v1/endpoints/odd-ext/events", ext, content_type="application/msgpack"
    )
    assert status == 400 and "extension" in body["error"]["message"]
    raw = msgpack.packb({"inputs": [[1.0, 2.0]], "outputs": [b"\x00\x01"]}, use_bin_type=True)
    status, body = daemon.post(
        "/v1/endpoints/odd-ext/events", raw, content_type="application/msgpack"
    )
    assert status == 400 and body["error"]["details"]["field"] == "outputs"


def test_one_element_output_rows_and_an_inferred_model_type(daemon):
    """A perfect classifier whose outputs come as [[0], [1], ...], labelled, registered
    without model_type: accuracy 1.0, no concept drift, model_type inferred."""
    register(daemon, "rows-out")
    start = (math.floor(time.time() / P) - 3) * P
    n = 120
    ids = [f"ro-{k}" for k in range(n)]
    classes = [k % 2 for k in range(n)]
    status, body = daemon.post(
        "/v1/endpoints/rows-out/labels", {"request_ids": ids, "labels": classes}
    )
    assert status == 202, body
    status, body = daemon.post(
        "/v1/endpoints/rows-out/events",
        {
            "inputs": [[float(k % 7), float(k % 5)] for k in range(n)],
            "outputs": [[c] for c in classes],
            "timestamps": [start + k * (P - 1) / n for k in range(n)],
            "request_ids": ids,
        },
    )
    assert status == 202, body

    def scored():
        _, body = daemon.get("/v1/endpoints/rows-out/results?application=model-performance")
        return [r for r in body["results"] if r["name"] == "accuracy"]

    (accuracy,) = daemon.wait_for(scored, timeout=90)
    assert accuracy["value"] == 1.0 and accuracy["extra"]["pairs"] == n
    _, drift = daemon.get("/v1/endpoints/rows-out/results?application=concept-drift")
    assert [r["status"] for r in drift["results"]] == [0]
    _, record = daemon.get("/v1/endpoints/rows-out")
    assert record["model_type"] == "classification"
    assert record["model_type_source"] == "inferred"


def test_registration_overrides_the_inferred_type(daemon):
    register(daemon, "typed", model_type="regression")
    _, record = daemon.get("/v1/endpoints/typed")
    assert (record["model_type"], record["model_type_source"]) == ("regression", "registered")
