"""The typed JSON path for MLRun event lists against the per-event parser of the same body
decoded as plain JSON: whenever it answers, its batches are the per-event parser's."""

import json
import math

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from modelmon_daemon.ingest.events import _parse_mlrun_per_event, parse_mlrun_events
from modelmon_daemon.ingest.mlrun_json import parse_mlrun_json
from tests.unit.test_mlrun_columns import (
    NOW,
    assert_same,
    mutated_events,
    router_event,
    shape,
)


def body(events) -> bytes:
    try:
        return orjson.dumps(events)  # NaN and infinity as null
    except TypeError:  # integers beyond 64 bits, which orjson reads but does not write
        return json.dumps(events, separators=(",", ":")).encode()


def same_as_per_event(raw: bytes) -> bool:
    """Asserts the typed answer equals the per-event parse of the plain decode; returns
    whether the typed path answered."""
    typed = parse_mlrun_json(raw, shape, NOW)
    if typed is None:
        return False
    slow = _parse_mlrun_per_event(orjson.loads(raw), shape, NOW)  # must not raise
    assert typed.events == slow.events
    assert list(typed.batches) == list(slow.batches)
    assert not typed.new_endpoints and not slow.new_endpoints
    for uid in typed.batches:
        assert_same(typed.batches[uid], slow.batches[uid])
    return True


def test_router_events_take_the_typed_path():
    events = [router_event(i) for i in range(200)]
    assert same_as_per_event(body(events))
    typed = parse_mlrun_json(body(events), shape, NOW)
    assert typed is not None and len(typed.batches["ep1"]) == 200
    # whitespace before the list, several endpoints, rows per event, 25% sampling
    mixed = []
    for i in range(40):
        uid = ("ep1", "ep2")[i % 2]
        event = router_event(i, uid, rows=1 + i % 3, sampling_percentage=25)
        if uid == "ep2":
            event["request"]["inputs"] = [[float(i), 2]] * (1 + i % 3)  # ints too
            event["resp"]["outputs"] = [[0.1, 0.9]] * (1 + i % 3)
        mixed.append(event)
    assert same_as_per_event(b" \n" + body(mixed))


def odd(change, at=5):
    events = [router_event(i) for i in range(20)]
    change(events[at])
    return body(events)


def test_anything_but_the_common_case_goes_the_plain_way():
    big_int_among_strings = odd(lambda e: e["resp"].update(outputs=[2**70]))
    big_int_among_strings = big_int_among_strings.replace(b'"outputs":[0]', b'"outputs":["no"]')
    assert b'"no"' in big_int_among_strings
    cases = {
        "error": odd(lambda e: e.update(error="boom")),
        "batched push": odd(lambda e: e.update(headers=["a"], values=[[1]])),
        "unknown endpoint": odd(lambda e: e.update(endpoint_id="new-one")),
        "int request id": odd(lambda e: e["request"].update(id=7)),
        "string feature": odd(lambda e: e["request"].update(inputs=[[1.0, "x", 2.0]])),
        "flat row": odd(lambda e: e["request"].update(inputs=[1.0, 2.0, 3.0])),
        "int version": odd(lambda e: e.update(version=1)),
        "a big int among string outputs": big_int_among_strings,
        "fewer events than the column path takes": body([router_event(i) for i in range(3)]),
        "one event": body(router_event(1)),
        "not JSON": b"[{",
    }
    for name, raw in cases.items():
        assert parse_mlrun_json(raw, shape, NOW) is None, name


def test_a_bad_event_is_still_named_by_index_and_field():
    raw = odd(lambda e: e["request"].update(inputs=[[1.0, "x", 2.0]]), at=7)
    assert parse_mlrun_json(raw, shape, NOW) is None
    try:
        parse_mlrun_events(orjson.loads(raw), shape, NOW)
    except Exception as exc:
        assert exc.details == {"index": 7, "field": "request.inputs[1]"}
    else:
        raise AssertionError("the string feature value was accepted")


def test_nulls_booleans_and_categorical_values_are_read_as_the_plain_decoder_reads_them():
    assert same_as_per_event(odd(lambda e: e["request"].update(inputs=[[1.0, None, 2.0]])))
    assert same_as_per_event(odd(lambda e: e["request"].update(inputs=[[1.0, True, 2]])))
    categorical = [router_event(i, "ep3") for i in range(20)]
    for i, event in enumerate(categorical):
        event["request"]["inputs"] = [[0.5 * i, ("a", 2, None, 1.5, True)[i % 5]]]
    assert same_as_per_event(body(categorical))
    categorical[4]["request"]["inputs"] = [[1.0, 2**70]]  # orjson: a float; kept as is
    assert parse_mlrun_json(body(categorical), shape, NOW) is None
    assert same_as_per_event(body(categorical)) is False


def test_big_integers_read_as_orjson_reads_them():
    numeric = odd(lambda e: e["resp"].update(outputs=[2**70]))
    assert same_as_per_event(numeric)  # a numeric column: the same float either way
    features = odd(lambda e: e["request"].update(inputs=[[2**70, 2**53 + 1, -(2**64)]]))
    assert same_as_per_event(features)


@settings(max_examples=300, deadline=None)
@given(mutated_events(), st.integers(16, 40))
def test_typed_path_never_disagrees_with_the_per_event_parser(events, n):
    """Corrupted fields, wrong widths, odd sampling, NaN and infinity (null in JSON)."""
    repeated = (events * math.ceil(n / len(events)))[:n]
    same_as_per_event(body(repeated))


def test_clean_generated_requests_do_take_the_typed_path():
    """The property above is not vacuous: clean requests are answered by the typed path."""
    answered = 0

    @settings(max_examples=60, deadline=None)
    @given(mutated_events())
    def run(events):
        nonlocal answered
        answered += same_as_per_event(body((events * 16)[:16]))

    run()
    assert answered >= 10
