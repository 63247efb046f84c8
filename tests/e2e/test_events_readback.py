"""Reading back what was stored, as MLRun's get_offline_features does: JSON columns or an
Arrow IPC stream over HTTP, and a DataFrame from the client."""

from __future__ import annotations

import asyncio
import math
import time
import urllib.request

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from modelmon_daemon import Client
from modelmon_daemon.client import AsyncClient
from tests.helpers import stored_events

pytestmark = pytest.mark.e2e
P = 30.0


def test_stored_events_come_back_as_json_arrow_and_dataframe(daemon):
    rng = np.random.default_rng(12)
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "readback",
            "project": "rb",
            "name": "rb",
            "feature_names": ["a", "b"],
            "reference": {"rows": rng.normal(size=(300, 2)).tolist()},
        },
    )
    assert status == 201
    start = (math.floor(time.time() / P) - 4) * P
    ts = (start + np.linspace(0, 2 * P - 1, 60)).tolist()  # two windows
    ids = [f"rb{i}" for i in range(60)]
    rows = rng.normal(size=(60, 2))
    status, _ = daemon.post(
        "/v1/endpoints/readback/events",
        {"inputs": rows.tolist(), "timestamps": ts, "request_ids": ids, "outputs": list(range(60))},
    )
    assert status == 202

    def stored():
        _, body = daemon.get("/v1/endpoints/readback/events")
        return body if body["rows"] == 60 else None

    body = daemon.wait_for(stored, timeout=90)
    events = body["events"]
    assert events["request_id"] == ids and not body["truncated"]
    assert events["a"] == pytest.approx(rows[:, 0].tolist())
    assert events["output"] == [float(i) for i in range(60)]
    # a time range and a limit
    _, second = daemon.get(f"/v1/endpoints/readback/events?start={start + P}&end={start + 2 * P}")
    assert second["events"]["request_id"] == ids[30:]
    _, first5 = daemon.get("/v1/endpoints/readback/events?limit=5")
    assert first5["events"]["request_id"] == ids[:5] and first5["truncated"]
    assert daemon.get("/v1/endpoints/readback/events?limit=0")[0] == 400
    assert daemon.get("/v1/endpoints/readback/events?start=1e300")[0] == 400
    # Arrow IPC
    req = urllib.request.Request(daemon.url + "/v1/endpoints/readback/events")
    req.add_header("Accept", "application/vnd.apache.arrow.stream")
    req.add_header("Authorization", f"Bearer {daemon.token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers["Content-Type"] == "application/vnd.apache.arrow.stream"
        table = pa.ipc.open_stream(resp.read()).read_all()
    assert table.column("request_id").to_pylist() == ids
    assert str(table.schema.field("timestamp").type) == "timestamp[us, tz=UTC]"
    # the client
    frame = Client(daemon.url, token=daemon.token).events("readback", start=start, end=start + P)
    assert frame["request_id"].tolist() == ids[:30]
    assert frame["b"].to_numpy() == pytest.approx(rows[:30, 1])


def test_endpoint_list_filters_and_pages(daemon):
    for i in range(5):
        status, _ = daemon.post(
            "/v1/endpoints",
            {
                "uid": f"page-{i}",
                "project": "paging" if i < 4 else "other-paging",
                "name": f"n{i % 2}",
                "model": "m",
                "feature_names": ["a"],
                "labels": {"team": f"t{i % 2}", **({"gpu": True} if i == 3 else {})},
            },
        )
        assert status in (200, 201)
    _, body = daemon.get("/v1/endpoints?project=paging")
    assert body["total"] == 4 and {e["uid"] for e in body["endpoints"]} == {
        f"page-{i}" for i in range(4)
    }
    _, body = daemon.get("/v1/endpoints?project=paging&name=n1")
    assert sorted(e["uid"] for e in body["endpoints"]) == ["page-1", "page-3"]
    _, first = daemon.get("/v1/endpoints?project=paging&limit=3")
    _, rest = daemon.get("/v1/endpoints?project=paging&limit=3&offset=3")
    assert len(first["endpoints"]) == 3 and len(rest["endpoints"]) == 1
    assert first["total"] == rest["total"] == 4
    assert daemon.get("/v1/endpoints?limit=-1")[0] == 400
    assert daemon.get("/v1/endpoints?offset=x")[0] == 400
    client = Client(daemon.url, token=daemon.token)
    assert len(client.endpoints(project="paging")) == 4
    assert [e["uid"] for e in client.endpoints(project="paging", limit=2, offset=1)] == [
        e["uid"] for e in first["endpoints"][1:3]
    ]
    found = client.endpoints(project="paging", labels=["team=t1", "gpu"])
    assert [(e["uid"], e["labels"]) for e in found] == [("page-3", {"team": "t1", "gpu": "true"})]
    assert len(client.endpoints(labels=["team=t1"], project="paging")) == 2


def test_deleting_an_endpoint_keeps_or_purges_its_data(daemon):
    rng = np.random.default_rng(14)
    start = (math.floor(time.time() / P) - 3) * P
    for uid in ("del-keep", "del-purge"):
        status, _ = daemon.post(
            "/v1/endpoints",
            {
                "uid": uid,
                "project": "del",
                "name": uid,
                "feature_names": ["a"],
                "reference": {"rows": rng.normal(size=(200, 1)).tolist()},
            },
        )
        assert status == 201
        status, _ = daemon.post(
            f"/v1/endpoints/{uid}/events",
            {"inputs": rng.normal(size=(30, 1)).tolist(), "timestamps": [start + 1.0] * 30},
        )
        assert status == 202

    def analyzed(uid):
        _, body = daemon.get(f"/v1/endpoints/{uid}/results?name=general_drift")
        return body["results"]

    daemon.wait_for(lambda: analyzed("del-keep") and analyzed("del-purge"), timeout=90)
    # an open window's events go with the endpoint
    daemon.post("/v1/endpoints/del-keep/events", {"inputs": [[0.5]], "timestamps": [time.time()]})
    status, body = daemon.delete("/v1/endpoints/del-keep")
    assert status == 200 and body["dropped_rows"] == 1 and not body["purged"]
    assert daemon.get("/v1/endpoints/del-keep")[0] == 404
    assert daemon.post("/v1/endpoints/del-keep/events", {"inputs": [[1.0]]})[0] == 404
    assert "del-keep" not in {
        e["uid"] for e in daemon.get("/v1/endpoints?project=del")[1]["endpoints"]
    }
    kept = stored_events(daemon.data_dir, "del-keep")
    assert len(kept) == 30  # stored data stays
    status, body = daemon.delete("/v1/endpoints/del-purge?purge=true")
    assert status == 200 and body["purged"]
    assert stored_events(daemon.data_dir, "del-purge").empty
    results = pd.read_parquet(
        daemon.data_dir / "results", filters=[("endpoint_id", "==", "del-purge")]
    )
    assert results.empty
    assert daemon.delete("/v1/endpoints/del-purge")[0] == 404
    assert daemon.delete("/v1/endpoints/nope?purge=maybe")[0] == 404
    # registered again, it starts afresh
    status, record = daemon.post(
        "/v1/endpoints",
        {"uid": "del-purge", "project": "del", "name": "again", "feature_names": ["a"]},
    )
    assert status == 201 and record["events_total"] == 0 and record["last_analyzed"] == {}


def test_dataframes_with_string_columns_round_trip_through_the_clients(daemon):
    """A DataFrame reference with a string column makes it categorical; events posted
    from DataFrames (sync and async client) come back with the strings intact."""
    rng = np.random.default_rng(21)
    reference = pd.DataFrame(
        {"x": rng.normal(size=300), "plan": rng.choice(["gold", "basic"], size=300)}
    )
    start = (math.floor(time.time() / P) - 3) * P
    frame = pd.DataFrame(
        {"x": [0.5, None, 1.5], "plan": ["gold", None, "platinum"]},
    )
    with Client(daemon.url, token=daemon.token) as client:
        record = client.register_endpoint("frames", "frames", reference=reference, uid="frames")
        assert record["categorical_features"] == ["plan"]
        assert client.log_events("frames", frame, timestamps=[start + 1.0] * 3) == 3

    async def post_async() -> int:
        async with AsyncClient(daemon.url, token=daemon.token) as client:
            return int(await client.log_events("frames", frame, timestamps=[start + 2.0] * 3))

    assert asyncio.run(post_async()) == 3

    def stored():
        with Client(daemon.url, token=daemon.token) as client:
            events = client.events("frames")
        return [events] if len(events) == 6 else None

    (events,) = daemon.wait_for(stored, timeout=90)
    plans = [None if pd.isna(v) else v for v in events["plan"].tolist()]
    assert plans == ["gold", None, "platinum"] * 2
    assert events["x"].isna().sum() == 2
