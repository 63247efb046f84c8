"""The daemon with its Parquet tree on an object store (`--parquet-uri s3://…`), against a
local S3-compatible server on 127.0.0.1: windows analyzed, events, results and labels in
the bucket and read back over HTTP, the data dir left with LMDB only."""

from __future__ import annotations

import math
import time

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from tests.e2e.conftest import Daemon, cli
from tests.ports import free_port
from tests.s3 import S3_ENV, local_s3

pytestmark = pytest.mark.e2e
P = 30.0
BUCKET = "modelmon-e2e"


@pytest.fixture(scope="module")
def s3():
    with local_s3() as server:
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture(scope="module")
def s3_daemon(s3, short_tmp):
    # a secret in the URI itself: it must never show (status, logs)
    key, secret = S3_ENV["AWS_ACCESS_KEY_ID"], S3_ENV["AWS_SECRET_ACCESS_KEY"]
    uri = s3.uri(BUCKET, "tree", credentials=f"{key}:{secret}")
    # references may be read from the bucket's refs/ folder, and from a store that is away
    dead = f"s3://{BUCKET}/dead?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    refs = f"daemon.reference_dirs={s3.uri(BUCKET, 'refs')},{dead}"
    argv = ["--parquet-uri", uri, "--set", refs]
    d = Daemon(short_tmp / "s3data", free_port(), argv, env=S3_ENV).start()
    yield d
    d.stop()


def test_windows_land_in_the_bucket_and_read_back_over_http(s3_daemon, s3):
    d = s3_daemon
    rng = np.random.default_rng(11)
    reference = rng.normal(size=(400, 2))
    status, _ = d.post(
        "/v1/endpoints",
        {
            "uid": "on-s3",
            "project": "p",
            "name": "m",
            "feature_names": ["x", "y"],
            "model_type": "classification",
            "reference": {"rows": reference.tolist()},
        },
    )
    assert status == 201
    start = (math.floor(time.time() / P) - 3) * P
    rows = rng.normal(loc=2.0, size=(50, 2))  # drifted
    outputs = [i % 2 for i in range(50)]
    ids = [f"s{i}" for i in range(50)]
    status, body = d.post(
        "/v1/endpoints/on-s3/events",
        {
            "inputs": rows.tolist(),
            "outputs": outputs,
            "timestamps": [start + i * 0.5 for i in range(50)],
            "request_ids": ids,
        },
    )
    assert (status, body) == (202, {"accepted": 50})

    def drift():
        _, res = d.get("/v1/endpoints/on-s3/results?name=general_drift")
        return res["results"]

    (result,) = d.wait_for(drift)
    assert result["status"] == 2 and result["value"] > 0.7  # read back from the bucket
    d.wait_for(lambda: d.get("/v1/endpoints/on-s3")[1]["buffered_events"] == 0)
    status, events = d.get("/v1/endpoints/on-s3/events")
    assert status == 200
    assert events["events"]["request_id"] == ids
    assert np.allclose(events["events"]["x"], rows[:, 0])
    # ground truth of the analyzed window joins and is stored in the bucket too
    status, body = d.post("/v1/endpoints/on-s3/labels", {"request_ids": ids, "labels": outputs})
    assert (status, body["joined"]) == (202, 50)
    keys = s3.keys(BUCKET)
    tops = {k.split("/")[1] for k in keys if k.startswith("tree/") and k.endswith(".parquet")}
    assert tops == {"events", "results", "labels"}
    assert not list(d.data_dir.rglob("*.parquet"))  # the data dir keeps LMDB and the token
    # any reader of the bucket gets the rows, split by endpoint_id
    table = ds.dataset(f"{BUCKET}/tree/events", filesystem=s3.filesystem()).to_table(
        filter=ds.field("endpoint_id") == "on-s3"
    )
    assert sorted(table.column("request_id").to_pylist()) == sorted(ids)
    # the location is shown, its credentials never
    status, body = d.get("/v1/status")
    assert body["parquet"].startswith(f"s3://***@{BUCKET}/tree?endpoint_override=127.0.0.1:")
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in str(body)
    out = d.cli("status")
    assert out.returncode == 0 and "parquet     s3://" in out.stdout
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in out.stdout
    assert "; parquet: s3://***@modelmon-e2e/tree?" in d.log.read_text()
    assert S3_ENV["AWS_SECRET_ACCESS_KEY"] not in d.log.read_text()


def test_a_bucket_that_is_not_there_stops_start_with_one_line(s3, short_tmp):
    uri = s3.uri("no-such-bucket", "tree", credentials="key:do-not-print")
    started = time.monotonic()
    out = cli(
        "start",
        "--data-dir",
        str(short_tmp / "nobucket"),
        "--port",
        str(free_port()),
        "--parquet-uri",
        uri,
        timeout=120,
        env_extra=S3_ENV,
    )
    assert out.returncode != 0
    assert time.monotonic() - started < 60  # before any Ray is started
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert "cannot open the Parquet store s3://***@no-such-bucket/tree?" in lines[0]
    assert "not found" in lines[0] and "do-not-print" not in out.stderr + out.stdout


def test_a_store_that_goes_away_holds_windows_in_the_log_until_it_is_back(s3_daemon, s3):
    d = s3_daemon
    status, _ = d.post(
        "/v1/endpoints",
        {
            "uid": "outage",
            "project": "p",
            "name": "m",
            "feature_names": ["x"],
            "reference": {"rows": [[float(v)] for v in range(100)]},
        },
    )
    assert status == 201
    errors = d.get("/v1/status")[1]["controller"]["tick_errors"]
    s3.stop()
    try:
        start = (math.floor(time.time() / P) - 3) * P
        ids = [f"o{i}" for i in range(20)]
        status, body = d.post(
            "/v1/endpoints/outage/events",
            {
                "inputs": [[float(i)] for i in range(20)],
                "timestamps": [start + i for i in range(20)],
                "request_ids": ids,
            },
        )
        assert (status, body) == (202, {"accepted": 20})  # durable in the log
        # the window closes and its commit fails while the store is away
        d.wait_for(lambda: d.get("/v1/status")[1]["controller"]["tick_errors"] > errors, 120)
        failures = d.get("/v1/status")[1]["controller"]["last_tick"]["failures"]
        assert any("connect" in f.lower() for f in failures), failures  # says why
        # reads say the store is away: 503 with Retry-After, not a 500
        for route in ("results", "events"):
            status, res = d.get(f"/v1/endpoints/outage/{route}")
            assert status == 503, res
            assert res["error"]["code"] == "storage_unavailable"
            assert "cannot be read: OSError:" in res["error"]["message"]
            assert res["error"]["details"]["retry_after_s"] == 5
        # labels are stored whole or not at all: their Parquet copy comes first
        status, res = d.post("/v1/endpoints/outage/labels", {"request_ids": ids, "labels": ids})
        assert status == 503 and res["error"]["code"] == "unavailable", res
        assert "labels could not be made durable: OSError:" in res["error"]["message"]
        assert res["error"]["details"]["retry_after_s"] == 5
    finally:
        s3.restart()

    def drift():
        _, res = d.get("/v1/endpoints/outage/results?name=general_drift")
        return res["results"]

    (result,) = d.wait_for(drift, 120)  # committed once, by a later tick
    d.wait_for(lambda: d.get("/v1/endpoints/outage")[1]["buffered_events"] == 0)
    time.sleep(2)
    assert len(drift()) == 1
    _, events = d.get("/v1/endpoints/outage/events")
    assert events["events"]["request_id"] == ids  # every row, once
    assert result["sample_size"] == 20


def test_a_reference_in_the_bucket_registers_an_endpoint(s3_daemon, s3):
    d = s3_daemon
    rng = np.random.default_rng(12)
    rows = rng.normal(size=(300, 2))
    table = pa.table({"x": rows[:, 0], "y": rows[:, 1]})
    with s3.filesystem().open_output_stream(f"{BUCKET}/refs/team/ref.parquet") as out:
        pq.write_table(table, out)
    body = {"project": "p", "name": "m", "feature_names": ["x", "y"]}
    status, remote = d.post(
        "/v1/endpoints",
        {**body, "uid": "ref-s3", "reference": {"path": f"s3://{BUCKET}/refs/team/ref.parquet"}},
    )
    assert status == 201, remote
    status, inline = d.post(
        "/v1/endpoints", {**body, "uid": "ref-rows", "reference": {"rows": rows.tolist()}}
    )
    assert status == 201
    assert remote["feature_stats"] == inline["feature_stats"]
    # the client names a file, never an endpoint or credentials; nothing outside refs/
    status, err = d.post(
        "/v1/endpoints",
        {**body, "uid": "x", "reference": {"path": f"s3://{BUCKET}/tree/results/a.parquet"}},
    )
    assert status == 403 and err["error"]["details"]["field"] == "reference.path"
    path = f"s3://{BUCKET}/refs/team/ref.parquet?endpoint_override=127.0.0.2:1"
    status, err = d.post("/v1/endpoints", {**body, "uid": "x", "reference": {"path": path}})
    assert status == 400 and "no query, credentials" in err["error"]["message"]
    # a store that is away: 503 with Retry-After, the endpoint not registered
    path = f"s3://{BUCKET}/dead/ref.parquet"
    status, err = d.post("/v1/endpoints", {**body, "uid": "x", "reference": {"path": path}})
    assert status == 503 and err["error"]["code"] == "reference_unavailable", err
    assert err["error"]["details"]["retry_after_s"] == 5
    assert d.get("/v1/endpoints/x")[0] == 404
