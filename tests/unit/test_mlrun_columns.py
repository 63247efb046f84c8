"""The column-wise MLRun parser against the per-event one: whenever it answers, its batches
are the per-event parser's, and it answers for the events MLRun's serving really sends."""

import math
from contextlib import contextmanager
from datetime import datetime, timedelta

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.core.times import parse_time
from modelmon_daemon.ingest import events as events_module
from modelmon_daemon.ingest.events import (
    _parse_mlrun_columns,
    _parse_mlrun_per_event,
    parse_mlrun_events,
    parse_native_events,
)

NOW = 1_800_000_000.0
SHAPES = {"ep1": (3, 1, ()), "ep2": (2, 2, ()), "ep3": (2, 1, (1,))}


def shape(uid):
    return SHAPES.get(uid)


def router_event(i, uid="ep1", rows=1, **extra):
    """As MLRun's V2ModelServer logs a prediction (int microseconds, a `when` string)."""
    return {
        "endpoint_id": uid,
        "class": "M",
        "model": "churn:v2",
        "function_uri": "proj/serving:latest",
        "request": {"id": f"r{i}", "inputs": [[0.5 * i, 1.0, -2.0]] * rows},
        "resp": {"id": f"r{i}", "outputs": [i % 2] * rows},
        "when": f"2026-11-30 10:00:{i % 60:02d}.{i:06d}",
        "microsec": 1500 + i,
        "effective_sample_count": rows,
        "sampling_percentage": 100,
        **extra,
    }


def assert_same(a: ColumnBatch, b: ColumnBatch) -> None:
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.latency_us, b.latency_us)
    assert a.request_ids.tolist() == b.request_ids.tolist()
    assert a.errors.tolist() == b.errors.tolist()
    assert a.error_events == b.error_events
    assert len(a.outputs) == len(b.outputs)
    for x, y in zip(a.outputs, b.outputs, strict=True):
        assert x.dtype == y.dtype
        assert x.tolist() == y.tolist() or np.array_equal(x, y, equal_nan=True)
    assert a.categorical.keys() == b.categorical.keys()
    for j in a.categorical:
        assert a.categorical[j].tolist() == b.categorical[j].tolist()
    if a.weights is None or b.weights is None:
        assert a.weights is None and b.weights is None
    else:
        np.testing.assert_array_equal(a.weights, b.weights)


def test_router_events_take_the_column_path_and_equal_the_per_event_parse():
    events = [router_event(i) for i in range(200)]
    fast = _parse_mlrun_columns(events, shape, NOW)
    assert fast is not None
    slow = _parse_mlrun_per_event(events, shape, NOW)
    assert fast.events == slow.events == 200
    assert_same(fast.batches["ep1"], slow.batches["ep1"])


def test_several_endpoints_rows_and_sampling_keep_order_and_weights():
    events = []
    for i in range(30):
        uid = ("ep1", "ep2")[i % 2]
        event = router_event(i, uid, rows=1 + i % 3, sampling_percentage=25)
        if uid == "ep2":
            event["request"]["inputs"] = [[float(i), 2.0]] * (1 + i % 3)
            event["resp"]["outputs"] = [[0.1, 0.9]] * (1 + i % 3)
        events.append(event)
    fast = _parse_mlrun_columns(events, shape, NOW)
    assert fast is not None
    slow = _parse_mlrun_per_event(events, shape, NOW)
    assert list(fast.batches) == list(slow.batches) == ["ep1", "ep2"]
    for uid in fast.batches:
        assert_same(fast.batches[uid], slow.batches[uid])
    # 25% sampling: each row stands for 4 predictions
    assert fast.batches["ep1"].predictions() == 4 * len(fast.batches["ep1"])


def test_flow_events_float_seconds_and_no_request_id():
    events = [router_event(i, microsec=0.0015) for i in range(5)]
    for event in events:
        del event["request"]["id"]
    fast = _parse_mlrun_columns(events, shape, NOW)
    assert fast is not None
    assert fast.batches["ep1"].latency_us.tolist() == [1500.0] * 5
    assert fast.batches["ep1"].request_ids.tolist() == [f"r{i}" for i in range(5)]  # resp id


@pytest.mark.parametrize(
    "change",
    [
        {"error": "boom"},
        {"when": "2026-11-30T10:00:01Z"},
        {"when": "2026"},
        {"microsec": True},
        {"endpoint_id": "new-endpoint"},
        {"sampling_percentage": 0},
    ],
)
def test_anything_but_the_common_case_goes_to_the_per_event_parser(change):
    events = [router_event(i) for i in range(3)]
    events[1].update(change)
    assert _parse_mlrun_columns(events, shape, NOW) is None


def test_a_bad_event_is_still_named_by_index_and_field():
    events = [router_event(i) for i in range(5)]
    events[3]["request"]["inputs"] = [[1.0, "x", 2.0]]
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events(events, shape, NOW)
    assert err.value.details["index"] == 3
    assert err.value.details["field"] == "request.inputs[1]"


scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(2**60), 2**60),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
whens = st.one_of(
    st.none(),
    st.floats(-10, NOW + 200_000),
    st.integers(-10, int(NOW) + 200_000),
    st.sampled_from(["2026-11-30 10:00:01.000001", "2026-11-30T10:00:01", "2026-02-30 10:00:01"]),
    st.text(max_size=26),
    st.datetimes().map(lambda d: d.isoformat(sep=" ")),
)
valid_whens = st.sampled_from(
    ["2026-11-30 10:00:01.000001", "2026-11-30T10:00:01.250000", "2026-11-30 10:00:01"]
)


@st.composite
def mutated_events(draw):
    """Two requests in three are clean (one `when` form and one `microsec` type per request,
    as a server sends); the rest carry corrupted fields, wrong widths and odd sampling."""
    n = draw(st.integers(1, 6))
    clean = draw(st.integers(0, 2)) > 0
    when_form = draw(valid_whens)
    micro_kind = draw(st.sampled_from([int, float, None]))
    events = []
    for i in range(n):
        uid = draw(st.sampled_from(["ep1", "ep2", "ep3"]))
        rows = draw(st.integers(1, 3))
        width, n_out, cats = SHAPES[uid]
        row = [draw(st.floats(-5, 5)) for _ in range(width)]
        for j in cats:
            row[j] = draw(st.sampled_from(["a", "b", None]))
        out = [0.2] * n_out if n_out > 1 else draw(st.sampled_from([1, 0.5, "yes", [1], True]))
        micro = {int: st.integers(0, 10**6), float: st.floats(0, 2), None: st.none()}
        event = {
            "endpoint_id": uid,
            "function_uri": "proj/serving:latest",
            "model": "m",
            "request": {"id": f"r{i}", "inputs": [list(row) for _ in range(rows)]},
            "resp": {"outputs": [out] * rows},
            "when": when_form[:-1] + str(i) if clean else draw(whens),
            "microsec": draw(micro[micro_kind]),
        }
        if not clean:
            if draw(st.booleans()):
                event["effective_sample_count"] = draw(st.one_of(st.integers(-1, 5), scalars))
                event["sampling_percentage"] = draw(st.one_of(st.integers(-1, 120), scalars))
            for _ in range(draw(st.integers(0, 2))):
                target = draw(st.sampled_from(["microsec", "when", "request", "resp", "error"]))
                event[target] = draw(scalars)
            if draw(st.integers(0, 5)) == 0:
                event["request"] = {"id": f"r{i}", "inputs": [[*row, 1.0]]}
        events.append(event)
    return events


@settings(max_examples=300, deadline=None)
@given(mutated_events())
def test_column_path_never_disagrees_with_the_per_event_parser(events):
    fast = _parse_mlrun_columns(events, shape, NOW)
    if fast is None:
        return
    slow = _parse_mlrun_per_event(events, shape, NOW)  # must not raise: fast accepted
    assert list(fast.batches) == list(slow.batches)
    for uid in fast.batches:
        assert_same(fast.batches[uid], slow.batches[uid])


def test_times_equal_fromisoformat_to_the_bit():
    events = [
        router_event(i, when=f"2026-11-30 10:{i % 60:02d}:07.{i * 7919:06d}") for i in range(97)
    ]
    fast = _parse_mlrun_columns(events, shape, NOW)
    slow = _parse_mlrun_per_event(events, shape, NOW)
    assert fast is not None
    assert fast.batches["ep1"].timestamps.tolist() == slow.batches["ep1"].timestamps.tolist()
    assert not math.isnan(fast.batches["ep1"].timestamps.sum())


per_row_values = st.lists(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-5, 2_000_000_000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from(["2026-11-30 10:00:01.000001", "2026-11-30T10:00:01", "x", ""]),
    ),
    min_size=1,
    max_size=8,
)


@settings(max_examples=400, deadline=None)
@given(per_row_values, st.sampled_from(["timestamps", "latency_us"]))
def test_native_columns_at_once_equal_value_by_value(values, key):
    """A native batch's timestamps and latencies: the one-pass path answers exactly what
    the per-value check answers, or declines (and the per-value check decides)."""
    payload = {"inputs": [[1.0, 2.0, 3.0]] * len(values), key: values}

    def parse():
        return parse_native_events(payload, ["a", "b", "c"], 0, NOW)

    try:
        fast = parse()
    except InvalidEvent as exc:
        fast = exc.details
    with _value_by_value():
        try:
            slow = parse()
        except InvalidEvent as exc:
            slow = exc.details
    if isinstance(slow, dict):
        assert fast == slow
    else:
        column = "timestamps" if key == "timestamps" else "latency_us"
        assert getattr(fast, column).tolist() == getattr(slow, column).tolist() or (
            np.array_equal(getattr(fast, column), getattr(slow, column), equal_nan=True)
        )


@contextmanager
def _value_by_value():
    """The per-value path alone: the one-pass helpers decline everything."""
    saved = events_module._latencies, events_module._event_times
    events_module._latencies = lambda values: None
    events_module._event_times = lambda values, now: None
    try:
        yield
    finally:
        events_module._latencies, events_module._event_times = saved


def test_clean_native_columns_take_the_one_pass_path():
    assert events_module._latencies([900, 1.5, None]) is not None
    assert events_module._latencies([900, float("nan")]) is None  # NaN is no latency
    assert events_module._latencies([-1, 5]) is None
    times = events_module._event_times([NOW - 5, "2026-11-30 10:00:01"], NOW)
    assert times is None  # one form per column
    times = events_module._event_times([NOW - 5, NOW - 1.5], NOW)
    assert times is not None and times.tolist() == [NOW - 5, NOW - 1.5]


# -- one event per request: the scalar path ------------------------------------------------

odd_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**60), 2**60),
    st.booleans(),
    st.none(),
    st.sampled_from(["1.5", "yes", " 2 ", "nan", "inf", ""]),
)


@st.composite
def single_events(draw):
    """One event of a known or unknown endpoint, mostly clean, sometimes with a field
    MLRun's serving would not send (odd numbers, numeric strings, wrapped outputs, ints
    as versions, sampling fields, errors)."""
    clean = draw(st.integers(0, 2)) > 0
    uid = "ep1" if clean else draw(st.sampled_from(["ep1", "ep2", "ep3", "new"]))
    width = SHAPES.get(uid, (3, 1, ()))[0]
    value = st.floats(-5, 5) if clean else st.one_of(st.floats(-5, 5), odd_numbers)
    row = [draw(value) for _ in range(width)]
    if not clean and draw(st.integers(0, 2)) == 0:
        row = row[:-1] if draw(st.booleans()) else [*row, 1.0]
    plain_outputs = st.one_of(
        st.integers(0, 3), st.floats(-1, 1), st.sampled_from(["yes", "no", [1], [0.5]])
    )
    odd_outputs = st.sampled_from(["1.5", True, [1, 2], ["a"], [[1]], None, {}])
    out = draw(plain_outputs if clean else st.one_of(plain_outputs, odd_outputs, odd_numbers))
    event = {
        "endpoint_id": uid,
        "function_uri": "proj/serving:latest",
        "model": "m",
        "request": {"id": draw(st.sampled_from(["r1", 7, None])), "inputs": [row]},
        "resp": {"id": "s1", "outputs": [out]},
        "when": draw(st.one_of(valid_whens, st.none(), st.floats(-10, NOW + 10**6))),
        "microsec": draw(st.one_of(st.none(), st.integers(0, 10**6), st.floats(0, 2))),
    }
    if clean:
        return event
    if draw(st.integers(0, 3)) == 0:
        event["effective_sample_count"] = draw(st.one_of(st.integers(-1, 5), st.floats(0, 3)))
        event["sampling_percentage"] = draw(st.one_of(st.integers(-1, 120), st.floats(0, 100)))
    if draw(st.integers(0, 5)) == 0:
        event["version"] = draw(st.sampled_from([1, 1.0, "1", True]))
        event.pop("endpoint_id")
    if draw(st.integers(0, 7)) == 0:
        event["error"] = draw(st.sampled_from([None, "boom"]))
    if draw(st.integers(0, 7)) == 0:
        event["request"]["inputs"] = row  # a single row sent flat
    return event


@settings(max_examples=400, deadline=None)
@given(single_events())
def test_one_event_per_request_is_parsed_as_the_per_event_parser_parses_it(event):
    """Whatever the event, the answer (batches, or the error naming index and field) is
    the per-event parser's."""

    def outcome(parse):
        try:
            parsed = parse([event], shape, NOW)
        except InvalidEvent as exc:
            return ("error", exc.details.get("index"), exc.details.get("field"))
        return parsed

    slow = outcome(events_module._parse_mlrun_per_event)
    fast = outcome(parse_mlrun_events)
    if isinstance(slow, tuple) or isinstance(fast, tuple):
        assert slow == fast
        return
    assert list(fast.batches) == list(slow.batches) and fast.events == slow.events == 1
    assert list(fast.new_endpoints) == list(slow.new_endpoints)
    for uid in fast.batches:
        if event["request"].get("id") is None:  # a fresh id each parse: compare the rest
            fast.batches[uid].request_ids = slow.batches[uid].request_ids
        assert_same(fast.batches[uid], slow.batches[uid])


def test_a_plain_prediction_event_takes_the_scalar_path():
    event = router_event(3)
    single = events_module._parse_mlrun_single(event, shape, NOW)
    assert single is not None
    assert_same(single.batches["ep1"], _parse_mlrun_per_event([event], shape, NOW).batches["ep1"])
    string_class = router_event(4, resp={"outputs": ["churn"]})
    assert events_module._parse_mlrun_single(string_class, shape, NOW) is not None
    for odd in (
        router_event(5, resp={"outputs": ["1.5"]}),  # numpy reads it as a number
        router_event(6, resp={"outputs": [True]}),
        router_event(7, error="boom"),
        router_event(8, uid="ep3"),  # categorical features
        router_event(9, uid="unknown"),
    ):
        assert events_module._parse_mlrun_single(odd, shape, NOW) is None


# -- `when` strings read column-wise ---------------------------------------------------------

_EPOCH = datetime(1970, 1, 1)
_ONE_US = timedelta(microseconds=1)


def _fromisoformat_micros(text: str) -> int | None:
    """The authority: what datetime.fromisoformat reads (naive = UTC), in microseconds."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is not None:
        return None
    return (moment - _EPOCH) // _ONE_US


def _canonical(v: datetime, sep: str = " ", fraction: bool = True) -> str:
    """MLRun's `when`: str(datetime) of a naive UTC time, "T" or " " between."""
    day = f"{v.year:04d}-{v.month:02d}-{v.day:02d}"
    text = f"{day}{sep}{v.hour:02d}:{v.minute:02d}:{v.second:02d}"
    return text + (f".{v.microsecond:06d}" if fraction else "")


moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31, 23, 59))


@settings(max_examples=300, deadline=None)
@given(
    st.lists(moments, min_size=1, max_size=20),
    st.booleans(),
    st.sampled_from([" ", "T"]),
)
def test_canonical_when_strings_read_as_fromisoformat_reads_them(values, fraction, sep):
    """Every canonical string is taken, with fromisoformat's exact microseconds."""
    texts = [_canonical(v, sep, fraction) for v in values]
    micros = events_module.canonical_time_micros(np.array(texts, dtype=f"<U{len(texts[0])}"))
    assert micros is not None
    assert micros.tolist() == [_fromisoformat_micros(t) for t in texts]


corruptions = st.tuples(st.integers(0, 25), st.sampled_from(list("0123456789 -:.TZx+\u00e9/")))


@settings(max_examples=500, deadline=None)
@given(moments, st.booleans(), st.lists(corruptions, min_size=1, max_size=3))
def test_a_corrupted_when_string_is_taken_only_as_fromisoformat_reads_it(value, fraction, edits):
    """Characters replaced anywhere (a day 31 in April, a month 13, a 25th hour, February
    29 of a common year, a letter): whenever the column reader takes the string, the value
    is fromisoformat's; whatever fromisoformat refuses, it refuses too."""
    text = list(_canonical(value, " ", fraction))
    for position, char in edits:
        text[position % len(text)] = char
    corrupted = "".join(text)
    micros = events_module.canonical_time_micros(np.array([corrupted], dtype=f"<U{len(corrupted)}"))
    authority = _fromisoformat_micros(corrupted)
    if micros is not None:
        assert micros.tolist() == [authority]
    if authority is None:
        assert micros is None


def test_when_strings_of_impossible_dates_go_to_the_per_event_parser():
    for text in (
        "2023-02-29 10:00:00",
        "2024-04-31 10:00:00",
        "2024-13-01 10:00:00",
        "2024-01-01 24:00:00",
        "2024-01-01 10:60:00",
        "2024-01-01 10:00:60",
        "0000-01-01 10:00:00",
        "2024-01-01_10:00:00",
        "2024-01-01 10:00:0x",
    ):
        assert events_module.canonical_time_micros(np.array([text])) is None, text
    leap = events_module.canonical_time_micros(np.array(["2024-02-29 23:59:59"]))
    assert leap is not None and leap.tolist() == [_fromisoformat_micros("2024-02-29 23:59:59")]
    times = events_module._event_times(["2026-11-30 10:00:01.500000"] * 2, NOW)
    assert times is not None and times.tolist() == [parse_time("2026-11-30 10:00:01.5")] * 2
