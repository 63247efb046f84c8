import hashlib
from datetime import UTC, datetime

import msgpack
import numpy as np
import pytest

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.core.identity import FunctionUri, endpoint_uid
from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.core.times import parse_time
from modelmon_daemon.ingest.events import parse_mlrun_events, parse_native_events, split_by_window

NOW = 1_800_000_000.0


def mlrun(inputs, outputs, when="2026-11-30 10:00:01.500000", **extra):
    return {
        "class": "M",
        "model": "churn:v2",
        "function_uri": "proj/serving:latest",
        "request": {"id": "r1", "inputs": inputs},
        "resp": {"id": "r1", "outputs": outputs},
        "when": when,
        "microsec": 1500,
        **extra,
    }


def unknown(uid):
    return None


def test_uid_is_mlrun_sha1_of_its_parts():
    expected = hashlib.sha1(b"proj_serving_latest_churn_v2").hexdigest()
    assert endpoint_uid("proj", "serving", "latest", "churn", "v2") == expected
    assert (
        endpoint_uid("proj", "serving", None, "churn", None)
        == hashlib.sha1(b"proj_serving_N/A_churn_latest").hexdigest()
    )


def test_function_uri_forms():
    assert FunctionUri.parse("db://p/f:t") == FunctionUri("p", "f", "t")
    assert FunctionUri.parse("p/f@abc") == FunctionUri("p", "f", None, "abc")
    # as MLRun's parse_versioned_object_uri: after the first ':' everything is the tag
    assert FunctionUri.parse("p/f:t@abc") == FunctionUri("p", "f", "t@abc", None)
    with pytest.raises(ValueError):
        FunctionUri.parse("nofunction")


def test_batch_of_rows_is_split_into_one_row_each():
    parsed = parse_mlrun_events(mlrun([[1, 2], [3, None]], [0, 1]), unknown, NOW)
    uid = endpoint_uid("proj", "serving", "latest", "churn", "v2")
    batch = parsed.batches[uid]
    assert len(batch) == 2
    assert batch.features[0].tolist() == [1, 2]
    assert np.isnan(batch.features[1, 1])  # null is missing, not an error
    assert batch.outputs[0].tolist() == [0, 1]
    assert batch.request_ids.tolist() == ["r1-0", "r1-1"]
    assert batch.latency_us.tolist() == [1500, 1500]
    when = datetime(2026, 11, 30, 10, 0, 1, 500000, tzinfo=UTC).timestamp()
    assert batch.timestamps.tolist() == [when, when]
    assert parsed.new_endpoints[uid].n_features == 2


def test_list_outputs_become_columns():
    parsed = parse_mlrun_events(mlrun([[1.0]], [[0.2, 0.8]]), unknown, NOW)
    batch = next(iter(parsed.batches.values()))
    assert [o.tolist() for o in batch.outputs] == [[0.2], [0.8]]


def test_one_rows_flat_outputs_are_its_outputs_as_mlrun_reads_them():
    """MLRun's stream processing reads `outputs: [0.2, 0.8]` of a single input row (flat
    or nested) as that row's two outputs; several rows still need one output each."""
    nested = parse_mlrun_events(mlrun([[1.0, 2.0]], [[0.2, 0.8]]), unknown, NOW)
    for inputs, outputs in (([[1.0, 2.0]], [0.2, 0.8]), ([1.0, 2.0], [0.2, 0.8])):
        parsed = parse_mlrun_events(mlrun(inputs, outputs), unknown, NOW)
        (uid, batch), (_, expected) = *parsed.batches.items(), *nested.batches.items()
        assert [o.tolist() for o in batch.outputs] == [[0.2], [0.8]]
        assert batch.features.tolist() == expected.features.tolist() == [[1.0, 2.0]]
        assert parsed.new_endpoints[uid].n_outputs == 2
    labels = parse_mlrun_events(mlrun([[1.0]], ["cat", "dog"]), unknown, NOW)
    assert [o.tolist() for o in next(iter(labels.batches.values())).outputs] == [["cat"], ["dog"]]
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events(mlrun([[1.0], [2.0]], [0.2, 0.8, 0.1]), unknown, NOW)
    assert err.value.details == {"index": 0, "field": "resp.outputs"}


def test_error_event_counts_and_needs_no_outputs():
    event = mlrun([[1.0, 2.0]], None, error="boom")
    del event["resp"]
    parsed = parse_mlrun_events([mlrun([[1, 2]], [1]), event], unknown, NOW)
    batch = next(iter(parsed.batches.values()))
    assert batch.error_events == 1
    assert batch.errors.tolist() == [None, "boom"]


def test_endpoint_id_routes_to_that_endpoint():
    parsed = parse_mlrun_events(
        mlrun([[1, 2]], [1], endpoint_id="abc"), lambda uid: (2, 1, ()), NOW
    )
    assert list(parsed.batches) == ["abc"]


def test_an_unknown_endpoint_id_creates_that_endpoint():
    """MLRun 1.8+: the API server, not the stream, creates the endpoint; the event names it."""
    parsed = parse_mlrun_events(mlrun([[1, 2]], [1], endpoint_id="0123abcd"), unknown, NOW)
    guess = parsed.new_endpoints["0123abcd"]
    assert (guess.uid, guess.project, guess.n_features, guess.n_outputs) == (
        "0123abcd",
        "proj",
        2,
        1,
    )
    assert list(parsed.batches) == ["0123abcd"]


@pytest.mark.parametrize(
    ("mutate", "index", "field"),
    [
        (lambda e: e.pop("request"), 1, "request"),
        (lambda e: e["request"].update(inputs=[[1, "x"]]), 1, "request.inputs[1]"),
        (lambda e: e["request"].update(inputs=[[1, 2, 3]]), 1, "request.inputs"),
        (lambda e: e.update(when="yesterday"), 1, "when"),
        (lambda e: e.update(microsec=-1), 1, "microsec"),
        (lambda e: e["resp"].update(outputs=[1, 2]), 1, "resp.outputs[0]"),
        (lambda e: e.update(request={"inputs": [[1, 2], [3, 4]]}), 1, "resp.outputs"),
        (lambda e: e["resp"].update(outputs=[[1], [2]]), 1, "resp.outputs"),
        (lambda e: e.pop("function_uri"), 1, "function_uri"),
        (lambda e: e.update(endpoint_id="../etc"), 1, "endpoint_id"),
        (lambda e: e.update(endpoint_id=["x"]), 1, "endpoint_id"),
    ],
)
def test_bad_event_names_index_and_field(mutate, index, field):
    events = [mlrun([[1, 2]], [1]), mlrun([[1, 2]], [1])]
    mutate(events[1])
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events(events, unknown, NOW)
    assert err.value.details == {"index": index, "field": field}


def test_registered_endpoint_shape_is_enforced():
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events(mlrun([[1, 2]], [1]), lambda uid: (3, 1, ()), NOW)
    assert "3 features" in err.value.message


def test_native_rows_and_columns():
    rows = parse_native_events(
        {
            "inputs": [[1, 2], [3, None]],
            "outputs": [5, 6],
            "timestamps": [NOW, "2026-01-01T00:00:00Z"],
            "latency_us": [10, None],
            "request_ids": ["a", "b"],
        },
        ["x", "y"],
        1,
        NOW,
    )
    cols = parse_native_events(
        {
            "inputs": {"y": [2, None], "x": [1, 3]},
            "outputs": [5, 6],
            "timestamps": [NOW, "2026-01-01T00:00:00Z"],
            "latency_us": [10, None],
            "request_ids": ["a", "b"],
        },
        ["x", "y"],
        1,
        NOW,
    )
    for batch in (rows, cols):
        assert np.array_equal(batch.features, np.array([[1, 2], [3, np.nan]]), equal_nan=True)
        assert batch.timestamps[1] == datetime(2026, 1, 1, tzinfo=UTC).timestamp()
        assert batch.request_ids.tolist() == ["a", "b"]
    defaults = parse_native_events({"inputs": [[1, 2]]}, ["x", "y"], 1, NOW)
    assert defaults.timestamps.tolist() == [NOW]
    assert np.isnan(defaults.outputs[0][0])


@pytest.mark.parametrize(
    ("payload", "index", "field"),
    [
        ({"inputs": [[1, 2], [1]]}, 1, "inputs"),
        ({"inputs": [[1, 2], [1, "z"]]}, 1, "inputs[1]"),
        ({"inputs": {"z": [1]}}, None, "inputs"),
        ({"inputs": {"x": [1], "y": ["a"]}}, 0, "inputs.y"),
        ({"inputs": [[1, 2]], "timestamps": ["bad"]}, 0, "timestamps"),
        ({"inputs": [[1, 2]], "latency_us": [-5]}, 0, "latency_us"),
        ({"inputs": [[1, 2]], "request_ids": ["a", "b"]}, None, "request_ids"),
        ({"inputs": [[1, 2]], "outputs": [1, 2]}, None, "outputs"),
        ({"outputs": [1]}, None, "inputs"),
    ],
)
def test_native_errors_name_row_and_field(payload, index, field):
    with pytest.raises(InvalidEvent) as err:
        parse_native_events(payload, ["x", "y"], 1, NOW)
    assert err.value.details == {"index": index, "field": field}


def test_parse_time_forms():
    assert (
        parse_time("2026-11-30 00:00:00.000000") == datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    )
    assert parse_time("2026-11-30T01:00:00+01:00") == datetime(2026, 11, 30, tzinfo=UTC).timestamp()
    assert parse_time(12.5) == 12.5
    with pytest.raises(ValueError):
        parse_time(True)


def test_msgpack_timestamps_are_times():
    """msgpack's timestamp type (what other languages' msgpack libraries write for a
    time) is read as the time it holds, in a native batch's body as decoded."""
    from modelmon_daemon.ingest.msgpack_columns import unpack_native

    moment = datetime(2026, 11, 30, 10, 0, 1, 250000, tzinfo=UTC)
    stamp = msgpack.Timestamp.from_datetime(moment)
    assert parse_time(stamp) == moment.timestamp()
    body = msgpack.packb(
        {"inputs": [[1.0, 2.0], [3.0, 4.0]], "timestamps": [stamp, moment.timestamp() + 1]},
        datetime=False,
    )
    batch = parse_native_events(unpack_native(body), ["x", "y"], 1, NOW)
    assert batch.timestamps.tolist() == [moment.timestamp(), moment.timestamp() + 1]
    late = msgpack.Timestamp.from_unix(NOW + 2 * 86400)
    with pytest.raises(InvalidEvent) as err:
        parse_native_events({"inputs": [[1.0, 2.0]], "timestamps": [late]}, ["x", "y"], 1, NOW)
    assert err.value.details == {"index": 0, "field": "timestamps"}


def test_split_by_window_aligns_to_epoch_multiples():
    batch = parse_native_events(
        {"inputs": [[1], [2], [3]], "timestamps": [59.9, 60.0, 125.0]}, ["x"], 1, NOW
    )
    parts = split_by_window(batch, 60.0)
    assert [(start, len(b)) for start, b in parts] == [(0.0, 1), (60.0, 1), (120.0, 1)]


def test_microsec_as_float_seconds_on_mlrun_flow_path():
    """MLRun's router sends `microsec` as int microseconds, its flow as float seconds."""
    router = parse_mlrun_events(mlrun([[1, 2]], [1], microsec=1830), unknown, NOW)
    flow = parse_mlrun_events(mlrun([[1, 2]], [1], microsec=0.00183), unknown, NOW)
    (r,) = router.batches.values()
    (f,) = flow.batches.values()
    assert r.latency_us.tolist() == [1830.0]
    assert f.latency_us.tolist() == pytest.approx([1830.0])


def test_the_model_class_comes_from_class_or_model_class():
    router = parse_mlrun_events(mlrun([[1, 2]], [1], **{"class": "RouterModel"}), unknown, NOW)
    flow = mlrun([[1, 2]], [1], model_class="FlowModel")
    flow.pop("class")
    assert next(iter(router.new_endpoints.values())).model_class == "RouterModel"
    parsed = parse_mlrun_events(flow, unknown, NOW)
    assert next(iter(parsed.new_endpoints.values())).model_class == "FlowModel"


def test_native_output_columns_are_matched_by_name():
    """An object of output columns may come in any key order: each lands in its output."""
    payload = {
        "inputs": [[1.0], [2.0]],
        "outputs": {"score": [0.9, 0.2], "prediction": [1, 0]},
    }
    batch = parse_native_events(payload, ["x"], 2, 1e9, (), ["prediction", "score"])
    assert batch.outputs[0].tolist() == [1.0, 0.0]
    assert batch.outputs[1].tolist() == [0.9, 0.2]
    with pytest.raises(InvalidEvent) as err:
        parse_native_events(
            {"inputs": [[1.0]], "outputs": {"prob": [0.9], "prediction": [1]}},
            ["x"],
            2,
            1e9,
            (),
            ["prediction", "score"],
        )
    assert err.value.details["field"] == "outputs.prob"


def test_a_hashed_function_uri_gives_mlruns_uid():
    """MLRun: sha1(f"{project}_{function}_{tag or hash or 'N/A'}_{model}_{version}")."""
    events = [
        {
            "function_uri": "proj/serving@0a1b2c",
            "model": "m:v2",
            "request": {"id": "r1", "inputs": [[1.0]]},
            "resp": {"id": "r1", "outputs": [1]},
            "when": "2026-01-01 00:00:00.000000+00:00",
            "microsec": 10,
        }
    ]
    parsed = parse_mlrun_events(events, unknown, NOW)
    expected = hashlib.sha1(b"proj_serving_0a1b2c_m_v2").hexdigest()
    assert list(parsed.batches) == [expected]


def test_sampled_events_stand_for_more_predictions():
    """MLRun 1.8+: an event of a 25%-sampled stream with effective_sample_count 2 (its two
    rows) stands for 8 predictions; counts scale, latency and errors stay per row."""
    sampled = mlrun([[1.0], [2.0]], [0, 1], effective_sample_count=2, sampling_percentage=25)
    plain = mlrun([[3.0]], [1], microsec=50)
    parsed = parse_mlrun_events([sampled, plain], unknown, NOW)
    (batch,) = parsed.batches.values()
    assert batch.weights.tolist() == [4.0, 4.0, 1.0]
    assert batch.predictions() == 9.0
    again = ColumnBatch.from_wire(batch.to_wire())
    assert again.weights.tolist() == [4.0, 4.0, 1.0]
    assert ColumnBatch.concat([batch, batch.take(np.array([2]))], 1, 1).predictions() == 10.0
    unsampled = parse_mlrun_events([plain], unknown, NOW)
    assert next(iter(unsampled.batches.values())).weights is None


@pytest.mark.parametrize(
    ("field", "value"),
    [("sampling_percentage", 0), ("sampling_percentage", 150), ("effective_sample_count", -1)],
)
def test_bad_sampling_fields_name_the_field(field, value):
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events([mlrun([[1.0]], [0], **{field: value})], unknown, NOW)
    assert err.value.details == {"index": 0, "field": field}


@pytest.mark.parametrize("events", [1, 20])  # the single-event path, and the column path
@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"sampling_percentage": 1e-300}, "sampling_percentage"),
        ({"effective_sample_count": 1e300}, "effective_sample_count"),
        ({"effective_sample_count": 2e10, "sampling_percentage": 1}, "sampling_percentage"),
    ],
)
def test_an_event_standing_for_absurdly_many_predictions_is_refused(events, fields, named):
    """effective_sample_count x 100 / sampling_percentage at most 1e12 for one event: a
    count of 1e302 predictions had been stored, and its rounding to an integer past 2**63
    made GET /v1/endpoints answer 500 for every endpoint."""
    body = [mlrun([[1.0]], [0]) for _ in range(events)]
    body[-1].update(fields)
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events(body, unknown, NOW)
    assert err.value.details == {"index": events - 1, "field": named}
    body[-1].update(effective_sample_count=1e9, sampling_percentage=0.1)  # 1e12: the limit
    assert parse_mlrun_events(body, unknown, NOW).rows == events


def test_prediction_counts_are_whole_while_exact_and_never_break_json():
    import orjson

    from modelmon_daemon.analytics.opsmetrics import ArrivalRing, whole_count

    assert whole_count(12.6) == 13 and isinstance(whole_count(12.6), int)
    assert whole_count(1.5e302) == 1.5e302 and isinstance(whole_count(1.5e302), float)
    assert whole_count(float("inf")) is None and whole_count(float("nan")) is None
    ring = ArrivalRing()
    ring.add(NOW, 1e300, np.array([1.0]))
    ring.add(NOW, 1e300, np.array([1.0]))
    snapshot = ring.snapshot(NOW)
    assert snapshot["predictions_count_5m"] == 2e300
    orjson.dumps(snapshot)  # an int past 2**63 here raised "Integer exceeds 64-bit range"


def test_mlrun_batched_pushes_are_their_events():
    """MLRun 1.7 with log_stream_batch > 1 pushes {..., headers, values}: the same rows as
    the events one by one."""
    single = [mlrun([[1.0, 2.0]], [0], when=f"2026-11-30 10:00:0{k}.000000") for k in range(3)]
    for k, e in enumerate(single):
        e["request"]["id"] = e["resp"]["id"] = f"r{k}"
    headers = ["request", "op", "resp", "when", "microsec", "metrics"]
    base = {k: v for k, v in single[0].items() if k not in ("request", "resp", "when", "microsec")}
    batched = {
        **base,
        "headers": headers,
        "values": [
            [e["request"], "infer", e["resp"], e["when"], e["microsec"], {}] for e in single
        ],
    }
    one_by_one = next(iter(parse_mlrun_events(single, unknown, NOW).batches.values()))
    parsed = parse_mlrun_events([batched], unknown, NOW)
    assert parsed.events == 3
    from_batch = next(iter(parsed.batches.values()))
    np.testing.assert_array_equal(from_batch.features, one_by_one.features)
    np.testing.assert_array_equal(from_batch.timestamps, one_by_one.timestamps)
    assert from_batch.request_ids.tolist() == ["r0", "r1", "r2"]
    bad = {**batched, "values": [*batched["values"][:2], [{"id": "x"}, "infer", None, "no", 1, {}]]}
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events([single[0], bad], unknown, NOW)
    assert err.value.details["index"] == 1
    assert err.value.details["field"].startswith("values[2].")


def test_an_event_as_mlruns_flow_builds_it():
    """MLRun's MonitoringPreProcessor (a flow with ModelRunnerStep) sends `model_class`,
    `microsec` as float seconds, `error: null`, request/resp with schemas and no resp id,
    and sampling fields: taken as they are."""
    event = {
        "model": "churn",
        "model_class": "ChurnModel",
        "microsec": 0.0042,
        "when": "2026-11-30 10:00:01.500000+00:00",
        "endpoint_id": "flow-endpoint-1",
        "labels": {},
        "function_uri": "shop/flow",
        "request": {"inputs": [[1.0, 2.0], [3.0, 4.0]], "id": "req-9", "input_schema": ["a", "b"]},
        "resp": {"outputs": [1, 0], "output_schema": ["label"]},
        "error": None,
        "metrics": None,
        "sampling_percentage": 100.0,
        "effective_sample_count": 2,
    }
    parsed = parse_mlrun_events([event], unknown, NOW)
    guess = parsed.new_endpoints["flow-endpoint-1"]
    assert (guess.model_class, guess.project, guess.name) == ("ChurnModel", "shop", "churn")
    batch = parsed.batches["flow-endpoint-1"]
    assert batch.latency_us.tolist() == [4200.0, 4200.0]
    assert batch.request_ids.tolist() == ["req-9-0", "req-9-1"]
    assert batch.weights is None and batch.error_events == 0


@pytest.mark.parametrize(
    ("input_schema", "output_schema", "features", "labels"),
    [
        (["age", "income"], ["churned"], ["age", "income"], ["churned"]),
        (["age"], ["churned", "p"], None, None),  # wrong counts: advice ignored
        (["age", "age"], [""], None, None),  # not unique, empty
        (["age", 3], "churned", None, None),  # not strings, not a list
        (["a" * 257, "b"], None, None, None),  # too long
    ],
)
def test_a_new_endpoint_takes_its_names_from_the_events_schema(
    input_schema, output_schema, features, labels
):
    """MLRun's flow serving sends `request.input_schema` and `resp.output_schema`: a new
    endpoint's features and outputs take those names when they name every column once;
    any other schema leaves f0..fN and is no reason to refuse the event."""
    event = mlrun([[1.0, 2.0]], [1])
    event["request"]["input_schema"] = input_schema
    event["resp"]["output_schema"] = output_schema
    guess = next(iter(parse_mlrun_events(event, unknown, NOW).new_endpoints.values()))
    assert (guess.feature_names, guess.label_names) == (features, labels)


def test_rows_without_request_ids_get_unique_ones():
    first = parse_native_events({"inputs": [[1.0, 2.0]] * 3}, ["a", "b"], 0, NOW)
    second = parse_native_events({"inputs": [[1.0, 2.0]] * 70_000}, ["a", "b"], 0, NOW)
    ids = first.request_ids.tolist() + second.request_ids.tolist()
    assert len(set(ids)) == len(ids) == 70_003
    prefix = second.request_ids[0][:-1]
    assert second.request_ids[69_999] == f"{prefix}69999"  # past the cached row numbers
    assert first.errors.tolist() == [None] * 3


@pytest.mark.parametrize("ts", [0.0, 599.999999, 600.0, 1.7e9 + 0.1, 1e10 + 599.9999])
@pytest.mark.parametrize("period", [600.0, 1.0, 0.25, 7.0])
def test_one_row_lands_in_the_window_many_rows_would(ts, period):
    one = parse_native_events({"inputs": [[1.0]], "timestamps": [ts]}, ["a"], 0, ts)
    two = parse_native_events({"inputs": [[1.0], [2.0]], "timestamps": [ts, ts]}, ["a"], 0, ts)
    assert [s for s, _ in split_by_window(one, period)] == [
        s for s, _ in split_by_window(two, period)
    ]
