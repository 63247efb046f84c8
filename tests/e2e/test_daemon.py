"""The real daemon over HTTP: MLRun events in, exact drift results out (HTTP + Parquet)."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

import msgpack
import numpy as np
import pandas as pd
import pytest

from tests.helpers import stored_events

pytestmark = pytest.mark.e2e
P = 30.0
FEATURES = ["f_a", "f_b", "f_c"]


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def mlrun_event(model, function_uri, rid, row, output, ts, micro=1200):
    return {
        "class": "Model",
        "model": model,
        "version": "v1",
        "function_uri": function_uri,
        "worker": "0",
        "host": "h",
        "request": {"id": rid, "inputs": [row]},
        "resp": {"id": rid, "outputs": [output]},
        "when": when(ts),
        "microsec": micro,
    }


def expected_feature_drift(values: np.ndarray, feature_stats: dict) -> tuple[float, float, float]:
    """An independent computation: np.histogram of the non-null values on the reference's
    padded edges, and MLRun's formulas written out term by term."""
    counts_u, edges = feature_stats["hist"]
    u = [c / sum(counts_u) for c in counts_u]
    counts_t, _ = np.histogram(values[~np.isnan(values)], bins=np.asarray(edges))
    t = [c / counts_t.sum() for c in counts_t]
    tvd = sum(abs(a - b) for a, b in zip(t, u, strict=True)) / 2
    hellinger = math.sqrt(max(1 - sum(math.sqrt(a * b) for a, b in zip(t, u, strict=True)), 0))

    def kl(a, e):
        return sum(
            x * math.log(x / (y if y != 0 else 1e-4)) for x, y in zip(a, e, strict=True) if x != 0
        )

    return tvd, hellinger, kl(t, u) + kl(u, t)


def test_mlrun_events_give_exact_results_over_http_and_parquet(daemon):
    rng = np.random.default_rng(42)
    reference = rng.normal(0, 1, size=(2000, 3))
    delivered = daemon.get("/v1/status")[1]["controller"]["records_delivered"]
    status, record = daemon.post(
        "/v1/endpoints",
        {
            "project": "shop",
            "name": "churn",
            "model": "churn",
            "version": "v1",
            "function_uri": "shop/serving:prod",
            "feature_names": FEATURES,
            "reference": {"rows": reference.tolist()},
        },
    )
    assert status == 201, record
    uid = record["uid"]
    import hashlib

    assert uid == hashlib.sha1(b"shop_serving_prod_churn_v1").hexdigest()
    stats = record["feature_stats"]
    assert len(stats["f_a"]["hist"][1]) == 23
    # its record reaches its application actor now, ahead of its windows (the exact
    # results below are computed on the reference arrays derived there)
    deadline = time.time() + 30
    while daemon.get("/v1/status")[1]["controller"]["records_delivered"] <= delivered:
        assert time.time() < deadline, "the record never reached an application actor"
        time.sleep(0.2)

    first = (math.floor(time.time() / P) - 4) * P  # back-filled history: four windows
    windows = []
    events = []
    for w in range(3):
        shift = 2.5 if w == 2 else 0.0
        values = rng.normal(shift, 1, size=(120, 3))
        values[5, 1] = np.nan  # a missing value counts as missing, not as an error
        windows.append(values)
        for i, row in enumerate(values):
            ts = first + w * P + i * (P / 121)
            events.append(
                mlrun_event(
                    "churn",
                    "shop/serving:prod",
                    f"w{w}-{i}",
                    [None if np.isnan(v) else float(v) for v in row],
                    int(i % 2),
                    ts,
                )
            )
    logged = daemon.get("/v1/status")[1]["log"]
    status, body = daemon.post("/v1/events", events)
    assert (status, body["accepted"]) == (202, 360)
    # the 202 came after a durable commit, which the log's statistics count
    now_logged = daemon.get("/v1/status")[1]["log"]
    assert now_logged["requests"] >= logged["requests"] + 1
    assert now_logged["commits"] >= logged["commits"] + 1
    assert now_logged["rows"] >= logged["rows"] + 360
    assert now_logged["commit_seconds"] > logged["commit_seconds"]

    def all_windows():
        _, res = daemon.get(
            f"/v1/endpoints/{uid}/results?application=histogram-data-drift&name=general_drift"
        )
        return res["results"] if len(res["results"]) == 3 else None

    drift = daemon.wait_for(all_windows)
    for w, result in enumerate(drift):
        per_feature = [
            expected_feature_drift(windows[w][:, j], stats[n]) for j, n in enumerate(FEATURES)
        ]
        tvds, hels, klds = (list(v) for v in zip(*per_feature, strict=True))
        expected = (np.mean(tvds) + np.mean(hels)) / 2
        assert result["value"] == pytest.approx(expected, abs=1e-9)
        assert result["start"] == datetime.fromtimestamp(first + w * P, tz=UTC).isoformat().replace(
            "+00:00", "Z"
        )
        assert result["kind"] == 0 and result["type"] == "result"
        assert result["sample_size"] == 120
        features = result["extra"]["features"]
        assert features["f_a"]["tvd"] == pytest.approx(tvds[0], abs=1e-9)
        assert features["f_c"]["kld"] == pytest.approx(klds[2], abs=1e-9)
    assert [r["status"] for r in drift[:2]] == [0, 0]
    assert drift[2]["status"] == 2  # a 2.5 sd shift is detected

    _, record = daemon.get(f"/v1/endpoints/{uid}")
    assert record["drift_status"] == "detected"
    assert record["drift_measures"]["general_drift"] == pytest.approx(drift[2]["value"])
    assert record["events_total"] == 360 and record["error_count"] == 0
    assert record["latency_avg_5m"] == pytest.approx(1200.0)
    assert record["predictions_count_5m"] == 360
    assert record["first_request"] == when(first).replace(" ", "T")[:19] + "Z"
    assert record["last_analyzed"]["histogram-data-drift"] is not None
    assert record["current_stats"]["f_a"]["count"] == 120

    # user applications ran beside it; the broken one is recorded and stopped nothing
    _, res = daemon.get(f"/v1/endpoints/{uid}/results?application=row-count&name=rows")
    assert [r["value"] for r in res["results"]] == [120.0, 120.0, 120.0]
    assert {f["application"] for f in record["app_failures"]} == {"broken"}

    # the same rows in Parquet, readable by pandas as they are
    events = stored_events(daemon.data_dir, uid)
    assert len(events) == 360 and events["request_id"].is_unique
    assert set(FEATURES) <= set(events.columns) and events["f_b"].isna().sum() == 3
    results = pd.read_parquet(daemon.data_dir / "results", filters=[("endpoint_id", "==", uid)])
    gd = results[results["name"] == "general_drift"].sort_values("start")
    assert list(gd["value"]) == pytest.approx([r["value"] for r in drift], abs=1e-12)
    assert set(results["full_name"]) >= {
        "shop.histogram-data-drift.result.general_drift",
        "shop.histogram-data-drift.metric.tvd_mean",
    }


def test_an_endpoint_mlruns_flow_serving_registers_has_its_schemas_names(daemon):
    """MLRun's flow serving puts the model's feature and output names in every event
    (`request.input_schema`, `resp.output_schema`): the endpoint its first event
    registers has those names, a string column among them categorical, and one flat
    row with several outputs is that row's outputs (MLRun reads it so)."""
    first = (math.floor(time.time() / P) - 4) * P
    event = mlrun_event("flowmodel", "shop/flow:prod", "s0", [41.0, "paris"], 1, first)
    event["request"]["input_schema"] = ["age", "city"]
    event["resp"]["output_schema"] = ["churned"]
    flat = mlrun_event("flatout", "shop/flow:prod", "s1", [41.0, 2.0], 1, first)
    flat["request"]["inputs"], flat["resp"]["outputs"] = [41.0, 2.0], [0.2, 0.8]
    status, body = daemon.post("/v1/events", [event, flat])
    assert status == 202 and body == {"accepted": 2, "rows": 2}, body
    _, listing = daemon.get("/v1/endpoints?project=shop&model=flowmodel")
    (record,) = listing["endpoints"]
    assert record["feature_names"] == ["age", "city"] and record["label_names"] == ["churned"]
    assert record["categorical_features"] == ["city"]
    _, listing = daemon.get("/v1/endpoints?project=shop&model=flatout")
    (record,) = listing["endpoints"]
    assert record["feature_names"] == ["f0", "f1"]
    assert record["label_names"] == ["output_0", "output_1"]


def test_reference_for_an_endpoint_mlrun_serving_registered_keeps_its_identity(daemon):
    """MLRun's serving registers an endpoint with its first event (no stats); reference
    rows posted later under its uid keep function_uri, version and model class, and the
    next window's drift is computed against them."""
    import hashlib

    rng = np.random.default_rng(7)
    first = (math.floor(time.time() / P) - 4) * P
    fn, features = "shop/late-ref:prod", ["f0", "f1", "f2"]
    uid = hashlib.sha1(b"shop_late-ref_prod_fraud_v1").hexdigest()
    first_event = mlrun_event("fraud", fn, "a0", [0.1, 0.2, 0.3], 0, first)
    first_event["labels"] = {"framework": "sklearn", "team": "risk"}  # the model's labels
    status, _ = daemon.post("/v1/events", [first_event])
    assert status == 202
    _, record = daemon.get(f"/v1/endpoints/{uid}")
    assert record["auto_registered"] and record["feature_stats"] == {}
    assert record["labels"] == {"framework": "sklearn", "team": "risk"}
    reference = rng.normal(0, 1, size=(1000, 3))
    status, record = daemon.post(
        "/v1/endpoints",
        {
            "uid": uid,
            "project": "shop",
            "name": "fraud",
            "feature_names": features,
            "reference": {"rows": reference.tolist()},
        },
    )
    assert status == 200, record
    assert (record["function_uri"], record["version"], record["model"]) == (fn, "v1", "fraud")
    assert record["model_class"] == "Model" and not record["auto_registered"]
    assert record["labels"] == {"framework": "sklearn", "team": "risk"}  # kept
    for query, found in (("team=risk", True), ("team=other", False), ("framework", True)):
        _, listing = daemon.get(f"/v1/endpoints?label={query}&project=shop")
        assert (uid in [e["uid"] for e in listing["endpoints"]]) is found, query
    assert len(record["feature_stats"]["f0"]["hist"][1]) == 23
    values = rng.normal(1.5, 1, size=(100, 3))
    events = [
        mlrun_event("fraud", fn, f"b{i}", row.tolist(), 1, first + P + i * 0.1)
        for i, row in enumerate(values)
    ]
    status, _ = daemon.post("/v1/events", events)
    assert status == 202

    second = datetime.fromtimestamp(first + P, tz=UTC).isoformat().replace("+00:00", "Z")

    def drift():  # the first window may be analyzed too, if it closed after the update
        _, res = daemon.get(
            f"/v1/endpoints/{uid}/results?application=histogram-data-drift&name=general_drift"
        )
        return [r for r in res["results"] if r["start"] == second] or None

    (result,) = daemon.wait_for(drift)
    stats = record["feature_stats"]
    per_feature = [expected_feature_drift(values[:, j], stats[n]) for j, n in enumerate(features)]
    tvds, hels, _ = (list(v) for v in zip(*per_feature, strict=True))
    assert result["value"] == pytest.approx((np.mean(tvds) + np.mean(hels)) / 2, abs=1e-9)


def test_native_form_in_msgpack_and_late_events(daemon):
    status, record = daemon.post(
        "/v1/endpoints",
        {
            "uid": "native-1",
            "project": "p",
            "name": "native",
            "feature_names": ["x", "y"],
            "feature_stats": {
                "x": {"hist": [[1, 2, 1], [0.0, 1.0, 2.0, 3.0]]},
                "y": {"hist": [[2, 1], [0.0, 5.0, 10.0]]},
            },
        },
    )
    assert status == 201, record
    assert record["feature_stats"]["x"]["hist"][0] == [0, 1, 2, 1, 0]
    start = (math.floor(time.time() / P) - 3) * P
    body = msgpack.packb(
        {
            "inputs": {"x": [0.5, 1.5, 1.6, 2.5], "y": [1.0, 6.0, None, 2.0]},
            "outputs": [1, 0, 1, 1],
            "timestamps": [start + 1, start + 2, start + 3, start + 4],
            "latency_us": [100, 200, 300, 400],
            "request_ids": ["a", "b", "c", "d"],
        }
    )
    status, body = daemon.post(
        "/v1/endpoints/native-1/events", body, content_type="application/msgpack"
    )
    assert (status, body) == (202, {"accepted": 4})

    def analyzed():
        _, res = daemon.get("/v1/endpoints/native-1/results?name=general_drift")
        return res["results"]

    (result,) = daemon.wait_for(analyzed)
    assert result["value"] == pytest.approx(0.0, abs=1e-9)  # x matches [1,2,1]; y [2,1]
    # an event for that closed window is late: stored and counted, not analyzed again
    status, _ = daemon.post(
        "/v1/endpoints/native-1/events",
        {"inputs": [[9.0, 9.0]], "timestamps": [start + 5], "request_ids": ["e"]},
    )
    assert status == 202
    daemon.wait_for(lambda: daemon.get("/v1/endpoints/native-1")[1]["late_events"] == 1)
    daemon.wait_for(lambda: "e" in set(stored_events(daemon.data_dir, "native-1")["request_id"]))
    time.sleep(1.5)
    assert len(analyzed()) == 1
    events = stored_events(daemon.data_dir, "native-1")
    assert sorted(events["request_id"]) == ["a", "b", "c", "d", "e"]


def test_msgpack_batches_store_exactly_the_values_sent(daemon):
    """Rows of float64 or float32 and int outputs are read from the msgpack bytes into
    numpy (ingest/msgpack_columns.py); mixed-width latencies the ordinary way. Either
    way the stored events are the values sent."""
    status, _ = daemon.post(
        "/v1/endpoints",
        {"uid": "packed", "project": "p", "name": "packed", "feature_names": FEATURES},
    )
    assert status == 201
    rng = np.random.default_rng(11)
    start = (math.floor(time.time() / P) - 3) * P
    sent = {}
    for prefix, single_float in (("d", False), ("s", True)):
        rows = rng.normal(size=(40, 3))
        ids = [f"{prefix}{i}" for i in range(40)]
        body = {
            "inputs": rows.tolist(),
            "outputs": rng.integers(0, 3, 40).tolist(),
            "latency_us": [900] * 20 + [70_000] * 20,  # two msgpack widths: decoded as lists
            "timestamps": (start + 1 + np.arange(40) * 0.1).tolist(),
            "request_ids": ids,
        }
        raw = msgpack.packb(body, use_single_float=single_float)
        status, answer = daemon.post(
            "/v1/endpoints/packed/events", raw, content_type="application/msgpack"
        )
        assert (status, answer) == (202, {"accepted": 40})
        values = rows.astype(np.float32).astype(np.float64) if single_float else rows
        for i, rid in enumerate(ids):
            sent[rid] = (*values[i], float(body["outputs"][i]), float(body["latency_us"][i]))

    def stored():
        events = stored_events(daemon.data_dir, "packed")
        return [events] if len(events) == 80 else None

    (events,) = daemon.wait_for(stored)
    got = {
        row["request_id"]: (*(row[f] for f in FEATURES), row["output"], row["latency_us"])
        for _, row in events.iterrows()
    }
    assert got == sent


def test_bad_input_gets_a_clear_error_and_changes_nothing(daemon):
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "strict",
            "project": "p",
            "name": "strict",
            "feature_names": ["x", "y"],
        },
    )
    assert status == 201
    good = {"inputs": [[1, 2]], "request_ids": ["ok"]}
    bad = {"inputs": [[1, 2], [3, "seven"]], "request_ids": ["g", "b"]}
    status, body = daemon.post("/v1/endpoints/strict/events", bad)
    assert status == 400
    assert body["error"]["details"] == {"index": 1, "field": "inputs[1]"}
    assert "seven" in body["error"]["message"]

    events = [
        mlrun_event("m", "p/f", "1", [1, 2], 1, time.time()),
        mlrun_event("m", "p/f", "2", [1, 2], 1, time.time()),
    ]
    events[1]["when"] = "not a time"
    status, body = daemon.post("/v1/events", events)
    assert status == 400 and body["error"]["details"] == {"index": 1, "field": "when"}
    # the endpoint of that rejected request was not created either
    _, listing = daemon.get("/v1/endpoints")
    assert all(e["function_uri"] != "p/f" for e in listing["endpoints"])

    status, body = daemon.post("/v1/endpoints/nope/events", good)
    assert status == 404 and body["error"]["code"] == "not_found"
    status, body = daemon.post("/v1/events", b"{not json", content_type="application/json")
    assert status == 400 and body["error"]["code"] == "invalid_body"
    big = {"inputs": [[1.0, 2.0]] * 100_000}
    status, body = daemon.post("/v1/endpoints/strict/events", big)
    assert status == 413 and body["error"]["code"] == "body_too_large"
    status, body = daemon.post("/v1/endpoints", {"project": "p", "name": "x"})
    assert status == 400 and body["error"]["details"]["field"] == "feature_names"
    _, record = daemon.get("/v1/endpoints/strict")
    assert record["events_total"] == 0
    status, _ = daemon.post("/v1/endpoints/strict/events", good)
    assert status == 202
    daemon.wait_for(lambda: daemon.get("/v1/endpoints/strict")[1]["events_total"] == 1)


def test_health_metrics_and_labels(daemon):
    status, body = daemon.get("/healthz")
    assert status == 200 and body["actors"]["controller"] and body["actors"]["writer"]
    import urllib.request

    with urllib.request.urlopen(daemon.url + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    from prometheus_client.parser import text_string_to_metric_families

    from modelmon_daemon.server.prometheus import metric_names

    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["modelmon_ingest_events"].type == "counter"
    names = {s.name for f in families.values() for s in f.samples}
    assert {
        "modelmon_ingest_events_total",
        "modelmon_endpoint_drift",
        "modelmon_endpoint_predictions_total",
        "modelmon_endpoint_latency_seconds_bucket",
        "modelmon_ingest_request_duration_seconds_bucket",
    } <= names
    declared = metric_names()
    for family in families.values():
        if family.name.startswith("modelmon_"):
            name = family.name + ("_total" if family.type == "counter" else "")
            assert name in declared, name
    status, _ = daemon.post(
        "/v1/endpoints", {"uid": "lab", "project": "p", "name": "lab", "feature_names": ["x"]}
    )
    status, body = daemon.post(
        "/v1/endpoints/lab/labels", {"request_ids": ["a", "b"], "labels": [1, 0]}
    )
    assert (status, body) == (202, {"accepted": 2, "joined": 0})
    labels = pd.read_parquet(daemon.data_dir / "labels" / "endpoint_id=lab")
    assert sorted(labels["request_id"]) == ["a", "b"]
    status, body = daemon.post("/v1/endpoints/lab/labels", {"request_ids": ["a"], "labels": [1, 2]})
    assert status == 400 and body["error"]["details"]["field"] == "labels"


def test_labels_join_predictions_and_score_the_model(daemon):
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "clf-e2e",
            "project": "p",
            "name": "clf",
            "feature_names": ["x"],
            "model_type": "classification",
            "reference_performance": {"accuracy": 0.95},
        },
    )
    assert status == 201
    ids = [f"q{i}" for i in range(40)]
    outputs = [i % 2 for i in range(40)]
    truth = [o if i < 30 else 1 - o for i, o in enumerate(outputs)]  # 30 of 40 right
    # labels may come first: the first window's labels are posted before its predictions
    status, body = daemon.post(
        "/v1/endpoints/clf-e2e/labels", {"request_ids": ids[:20], "labels": truth[:20]}
    )
    assert (status, body["joined"]) == (202, 0)
    start = (math.floor(time.time() / P) - 3) * P
    ts = [start + (i if i < 20 else P + i - 20) for i in range(40)]
    status, _ = daemon.post(
        "/v1/endpoints/clf-e2e/events",
        {
            "inputs": [[float(i)] for i in range(40)],
            "outputs": outputs,
            "timestamps": ts,
            "request_ids": ids,
        },
    )
    assert status == 202

    def scored():
        _, res = daemon.get(
            "/v1/endpoints/clf-e2e/results?application=model-performance&name=accuracy"
        )
        return res["results"] if res["results"] else None

    (first,) = daemon.wait_for(scored)
    assert first["value"] == 1.0 and first["sample_size"] == 20 and first["status"] == 0
    daemon.wait_for(lambda: daemon.get("/v1/endpoints/clf-e2e")[1]["buffered_events"] == 0)
    # labels of the analyzed second window join its stored predictions at once
    status, body = daemon.post(
        "/v1/endpoints/clf-e2e/labels", {"request_ids": ids[20:], "labels": truth[20:]}
    )
    assert (status, body["joined"]) == (202, 20)
    _, res = daemon.get("/v1/endpoints/clf-e2e/results?application=concept-drift")
    assert res["results"][0]["extra"]["detector"] == "DDM"


def test_labels_sent_with_the_events_are_joined_and_scored(daemon):
    from modelmon_daemon import Client

    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "inline",
            "project": "p",
            "name": "m",
            "feature_names": ["x"],
            "model_type": "classification",
        },
    )
    assert status == 201
    start = (math.floor(time.time() / P) - 3) * P
    rng = np.random.default_rng(5)
    outputs = rng.integers(0, 2, 60).tolist()
    truth = [o if rng.random() < 0.7 else 1 - o for o in outputs]
    labels = [None if i % 6 == 5 else t for i, t in enumerate(truth)]  # 50 of 60 labelled
    # a bad label: 400 naming it, and neither the events nor any label are stored
    status, body = daemon.post(
        "/v1/endpoints/inline/events",
        {
            "inputs": [[1.0], [2.0]],
            "outputs": [0, 1],
            "timestamps": [start, start + 1],
            "labels": [1, {"no": 1}],
        },
    )
    assert status == 400
    assert body["error"]["details"] == {"index": 1, "field": "labels"}
    status, body = daemon.post(
        "/v1/endpoints/inline/events",
        {"inputs": [[1.0]], "outputs": [0], "timestamps": [start], "labels": [1, 0]},
    )
    assert status == 400 and body["error"]["details"]["field"] == "labels"
    # no request ids: the daemon's generated ones carry the labels
    with Client(daemon.url, token=daemon.token) as client:
        accepted = client.log_events(
            "inline",
            [[float(i)] for i in range(60)],
            outputs=outputs,
            timestamps=[start + i * 0.25 for i in range(60)],
            labels=labels,
        )
    assert accepted == 60

    def scored():
        _, res = daemon.get("/v1/endpoints/inline/results?application=model-performance")
        return {r["name"]: r for r in res["results"]} or None

    results = daemon.wait_for(scored)
    pairs = [(o, t) for o, t in zip(outputs, labels, strict=True) if t is not None]
    assert results["accuracy"]["sample_size"] == len(pairs) == 50  # the labelled rows
    assert results["accuracy"]["value"] == pytest.approx(
        sum(o == t for o, t in pairs) / len(pairs), abs=1e-12
    )
    assert daemon.get("/v1/endpoints/inline")[1]["events_total"] == 60


def test_categorical_feature_over_http(daemon):
    rng = np.random.default_rng(4)
    rows = [[float(rng.normal()), str(rng.choice(["a", "b"]))] for _ in range(500)]
    status, record = daemon.post(
        "/v1/endpoints",
        {
            "uid": "cat-e2e",
            "project": "p",
            "name": "cat",
            "feature_names": ["x", "kind"],
            "reference": {"rows": rows},
        },
    )
    assert status == 201 and record["categorical_features"] == ["kind"]
    start = (math.floor(time.time() / P) - 3) * P
    events = [
        mlrun_event(
            "cat",
            "p/cat",
            f"c{i}",
            [float(rng.normal()), "c" if i % 2 else "a"],
            1,
            start + i * 0.1,
        )
        for i in range(100)
    ]
    for e in events:
        e["endpoint_id"] = "cat-e2e"
    status, _ = daemon.post("/v1/events", msgpack.packb(events), content_type="application/msgpack")
    assert status == 202

    def result():
        _, res = daemon.get("/v1/endpoints/cat-e2e/results?name=categorical_drift")
        return res["results"]

    (found,) = daemon.wait_for(result)
    assert found["extra"]["features"]["kind"]["unseen"] == ["c"]
    events_file = stored_events(daemon.data_dir, "cat-e2e")
    assert set(events_file["kind"]) == {"a", "c"}
