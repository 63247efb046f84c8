"""MLRun's HTTP monitoring payload made into serving events (ingest/mlrun_http.py); the
same payloads against MLRun's own translation are in tests/e2e/test_mlrun_serving.py."""

import pytest

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.ingest.mlrun_http import parse_http_payloads, serving_event

NOW = 1_800_000_000.0
KNOWN = {"ep-1": (["age", "income"], ["churned"])}


def payload(**fields):
    return {"model_endpoint_uid": "ep-1", "model_endpoint_name": "churn", **fields}


def translated(**fields):
    return serving_event(0, payload(**fields), KNOWN.get)


@pytest.mark.parametrize(
    ("inputs", "rows"),
    [
        ([[41, 1.0], [50, 2.0]], [[41, 1.0], [50, 2.0]]),  # rows
        ([41, 1.0], [41, 1.0]),  # one flat row
        ({"age": [41, 50], "income": [1.0, 2.0]}, [[41, 1.0], [50, 2.0]]),  # columns
        ({"income": 1.0, "age": 41, "extra": 3}, [[41, 1.0]]),  # one row, schema's order
        ([{"income": 1.0, "age": 41}, {"age": 50, "income": 2.0}], [[41, 1.0], [50, 2.0]]),
    ],
)
def test_inputs_in_every_form_mlrun_reads_become_rows(inputs, rows):
    event = translated(inputs=inputs, outputs=[1, 0] if len(rows) == 2 else [1])
    assert event["request"]["inputs"] == rows
    assert event["request"]["input_schema"] == ["age", "income"]
    assert event["endpoint_id"] == "ep-1" and event["model"] == "churn"


def test_a_new_endpoint_is_named_by_the_keys():
    event = serving_event(
        0,
        {
            "model_endpoint_uid": "ep-new",
            "model_endpoint_name": "m",
            "inputs": {"a": [1, 2], "b (cm)": [3, 4]},
            "outputs": {"label": [1, 0], "proba": [0.9, 0.2]},
        },
        KNOWN.get,
    )
    assert event["request"]["inputs"] == [[1, 3], [2, 4]]
    assert event["request"]["input_schema"] == ["a", "b_cm"]  # MLRun's norm_column_name
    assert event["resp"]["outputs"] == [[1, 0.9], [0, 0.2]]
    assert event["resp"]["output_schema"] == ["label", "proba"]
    parsed = parse_http_payloads(
        {
            "model_endpoint_uid": "ep-new",
            "model_endpoint_name": "m",
            "inputs": {"a": [1, 2], "b (cm)": [3, 4]},
            "outputs": {"label": [1, 0], "proba": [0.9, 0.2]},
        },
        lambda uid: None,
        lambda uid: None,
        NOW,
    )
    guess = parsed.new_endpoints["ep-new"]
    assert (guess.feature_names, guess.label_names) == (["a", "b_cm"], ["label", "proba"])
    assert parsed.batches["ep-new"].features.tolist() == [[1, 3], [2, 4]]


def test_one_column_of_several_values_is_that_many_rows():
    """MLRun would make one row of them; a feature's values are rows."""
    known = {"ep-1": (["age"], ["churned"])}
    event = serving_event(
        0, payload(inputs={"age": [41, 50]}, outputs={"churned": [1, 0]}), known.get
    )
    assert event["request"]["inputs"] == [[41], [50]]
    assert event["resp"]["outputs"] == [1, 0]


def test_latency_is_microseconds_whatever_its_type_and_time_and_id_pass_through():
    event = translated(
        inputs=[1, 2], outputs=[1], latency=1500.4, timestamp="2026-11-30 10:00:00", request_id="q"
    )
    assert event["microsec"] == 1500 and type(event["microsec"]) is int
    assert event["when"] == "2026-11-30 10:00:00" and event["request"]["id"] == "q"
    assert translated(inputs=[1, 2], outputs=[1])["microsec"] is None
    parsed = parse_http_payloads(
        payload(inputs=[1, 2], outputs=[1], latency=1500.0), lambda uid: (2, 1, ()), KNOWN.get, NOW
    )
    assert parsed.batches["ep-1"].latency_us.tolist() == [1500.0]


@pytest.mark.parametrize(
    ("fields", "index", "field"),
    [
        ({"inputs": None}, 1, "inputs"),
        ({"model_endpoint_name": ""}, 1, "model_endpoint_name"),
        ({"model_endpoint_uid": 7}, 1, "model_endpoint_uid"),
        ({"inputs": {"age": [1, 2]}}, 1, "inputs.income"),
        ({"inputs": {"age": [1, 2], "income": 3}}, 1, "inputs"),
        ({"inputs": {"age": [1, 2], "income": [3]}}, 1, "inputs"),
        ({"inputs": [{"age": 1, "income": 2}, {"age": 1}]}, 1, "inputs"),
        ({"inputs": [[1, "x"]]}, 1, "inputs[1]"),
        ({"outputs": [1, 0]}, 1, "outputs[0]"),  # one row, two outputs: the endpoint has one
        ({"timestamp": "yesterday"}, 1, "timestamp"),
        ({"latency": -3}, 1, "latency"),
        ({"model_endpoint_uid": "../x"}, 1, "model_endpoint_uid"),
    ],
)
def test_a_bad_payload_names_its_own_field(fields, index, field):
    good = payload(inputs=[[1.0, 2.0]], outputs=[1])
    with pytest.raises(InvalidEvent) as err:
        parse_http_payloads([good, {**good, **fields}], lambda uid: (2, 1, ()), KNOWN.get, NOW)
    assert err.value.details == {"index": index, "field": field}
