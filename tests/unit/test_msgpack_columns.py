"""Numeric msgpack arrays read straight into numpy give exactly what msgpack.unpackb and
the list parser give: values, errors (index, field, message) and refusals."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.ingest.events import parse_native_events
from modelmon_daemon.ingest.msgpack_columns import unpack_native

NOW = 1_800_000_000.0
FEATURES = [f"f{j}" for j in range(3)]


def unpackb(raw: bytes):
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, timestamp=0)


def same_values(fast, slow) -> bool:
    if isinstance(fast, np.ndarray):
        expected = np.array(slow, dtype=np.float64)
        return fast.shape == expected.shape and np.array_equal(fast, expected, equal_nan=True)
    if isinstance(slow, list):
        return (
            isinstance(fast, list)
            and len(fast) == len(slow)
            and all(same_values(f, s) for f, s in zip(fast, slow, strict=True))
        )
    if isinstance(slow, float) and math.isnan(slow):
        return isinstance(fast, float) and math.isnan(fast)
    return type(fast) is type(slow) and bool(fast == slow)


def test_common_batch_comes_back_as_arrays():
    rng = np.random.default_rng(1)
    payload = {
        "inputs": rng.normal(size=(50, 3)).tolist(),
        "outputs": rng.integers(0, 2, 50).tolist(),
        "latency_us": [900] * 25 + [70_000] * 25,  # uint16 then uint32: two tags, lists
        "request_ids": [f"r{i}" for i in range(50)],
    }
    fast = unpack_native(msgpack.packb(payload))
    assert isinstance(fast["inputs"], np.ndarray) and fast["inputs"].shape == (50, 3)
    assert np.array_equal(fast["inputs"], np.array(payload["inputs"]))
    assert isinstance(fast["outputs"], np.ndarray)
    assert np.array_equal(fast["outputs"], payload["outputs"])
    assert fast["latency_us"] == payload["latency_us"]  # mixed widths: decoded as a list
    assert fast["request_ids"] == payload["request_ids"]


@pytest.mark.parametrize(
    "column",
    [
        [900] * 10,  # uint16
        [-1, 5, -32, 127],  # fixints, both signs
        [2**40, 2**41],  # uint64
        [-(2**20)] * 3,  # int32
        [0.5, float("nan"), float("inf")],  # float64, specials kept
    ],
)
def test_numeric_columns_of_one_tag(column):
    fast = unpack_native(msgpack.packb({"latency_us": column}))
    assert isinstance(fast["latency_us"], np.ndarray)
    assert same_values(fast["latency_us"], column)


def test_float32_rows_and_long_rows():
    rows = np.random.default_rng(2).normal(size=(7, 20)).tolist()  # 20 > 15: 3-byte headers
    fast = unpack_native(msgpack.packb({"inputs": rows}, use_single_float=True))
    slow = unpackb(msgpack.packb({"inputs": rows}, use_single_float=True))
    assert isinstance(fast["inputs"], np.ndarray)
    assert np.array_equal(fast["inputs"], np.array(slow["inputs"]))


@pytest.mark.parametrize(
    "rows",
    [
        [[1.0, None, 2.0]],  # a null
        [[1.0, 2, 3.0]],  # an int among floats
        [[1.0, 2.0], [1.0, 2.0, 3.0]],  # ragged
        [[1, 2, 3]],  # ints: kept as lists (categorical features read them as ints)
        [],
        [[]],
    ],
)
def test_anything_else_is_decoded_as_lists(rows):
    fast = unpack_native(msgpack.packb({"inputs": rows}))
    assert fast == unpackb(msgpack.packb({"inputs": rows}))


@pytest.mark.parametrize(
    "raw",
    [
        msgpack.packb({"inputs": [[1.0, 2.0]]})[:-3],  # truncated inside the rows
        msgpack.packb({"inputs": [[1.0, 2.0]]}) + b"\x01",  # trailing bytes
        msgpack.packb({"outputs": [1, 2, 3]})[:-1],  # truncated fixints
        msgpack.packb({"x": msgpack.ExtType(5, b"zz")}),  # extension types refused
        b"\x81",  # a map with no key
    ],
)
def test_malformed_bodies_raise_as_unpackb_does(raw):
    with pytest.raises(Exception) as slow:
        msgpack.unpackb(raw, raw=False, ext_hook=lambda c, d: (_ for _ in ()).throw(ValueError()))
    with pytest.raises(Exception) as fast:
        unpack_native(raw)
    assert isinstance(fast.value, ValueError | msgpack.UnpackException)
    assert slow.value is not None


scalars = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**63), 2**64 - 1),
    st.none(),
    st.booleans(),
    st.text(max_size=3),
)


@settings(max_examples=300, deadline=None)
@given(
    st.dictionaries(
        st.sampled_from(["inputs", "outputs", "latency_us", "request_ids", "other"]),
        st.one_of(
            st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=6),
            st.lists(st.integers(-(2**63), 2**64 - 1), max_size=6),
            st.lists(st.lists(st.floats(allow_nan=False), min_size=2, max_size=2), max_size=4),
            st.lists(st.lists(scalars, max_size=3), max_size=4),
            st.lists(scalars, max_size=5),
            scalars,
        ),
    ),
    st.booleans(),
)
def test_same_values_as_unpackb(payload, single_float):
    try:
        raw = msgpack.packb(payload, use_single_float=single_float)
    except OverflowError:  # too large for float32: nothing to decode
        assume(False)
    fast, slow = unpack_native(raw), unpackb(raw)
    assert fast.keys() == slow.keys()
    for key in slow:
        assert same_values(fast[key], slow[key]), key


def parsed(payload, decoder, categorical=(), n_outputs=1):
    raw = msgpack.packb(payload)
    try:
        return parse_native_events(decoder(raw), FEATURES, n_outputs, NOW, categorical)
    except InvalidEvent as exc:
        return ("refused", str(exc), exc.details)


def _nan_free(value):
    """NaN compares unequal to itself: a marker, so that equal batches compare equal."""
    return "NaN" if isinstance(value, float) and math.isnan(value) else value


def batch_fields(batch):
    if isinstance(batch, tuple):
        return batch
    return (
        batch.timestamps.tolist(),
        np.nan_to_num(batch.features, nan=-7.0).tolist(),
        [np.nan_to_num(np.asarray(o, dtype=float), nan=-7.0).tolist() for o in batch.outputs],
        batch.request_ids.tolist(),
        np.nan_to_num(batch.latency_us, nan=-7.0).tolist(),
        {j: [_nan_free(x) for x in v.tolist()] for j, v in batch.categorical.items()},
    )


row_values = st.floats(allow_nan=True, allow_infinity=True, width=64)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.lists(row_values, min_size=3, max_size=3), min_size=1, max_size=5),
    st.one_of(
        st.none(),
        st.lists(st.integers(-5, 5), min_size=1, max_size=5),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), min_size=1, max_size=5),
    ),
    st.one_of(
        st.none(),
        st.lists(st.integers(-3, 10**6), min_size=1, max_size=5),
        st.lists(st.one_of(st.floats(-1, 1e14), st.just(math.nan)), min_size=1, max_size=5),
    ),
    st.sampled_from([(), (1,)]),
    st.sampled_from([1, 2]),
)
@example([[0.0, math.nan, 0.0]], None, None, (1,), 1)  # NaN as a categorical value
def test_parsed_batch_is_the_same_either_way(inputs, outputs, latency, categorical, n_outputs):
    payload = {"inputs": inputs, "request_ids": [f"r{i}" for i in range(len(inputs))]}
    if outputs is not None:
        payload["outputs"] = outputs
    if latency is not None:
        payload["latency_us"] = latency
    fast = parsed(payload, unpack_native, categorical, n_outputs)
    slow = parsed(payload, unpackb, categorical, n_outputs)
    assert batch_fields(fast) == batch_fields(slow)


def test_errors_name_the_same_row_and_field():
    payload = {
        "inputs": [[1.0, 2.0, 3.0], [1.0, math.inf, 3.0]],
        "outputs": [1, 0],
        "request_ids": ["a", "b"],
    }
    fast = parsed(payload, unpack_native)
    assert fast == parsed(payload, unpackb)
    assert fast[0] == "refused" and fast[2] == {"index": 1, "field": "inputs[1]"}
    payload["inputs"] = [[1.0, 2.0], [3.0, 4.0]]
    wrong_width = parsed(payload, unpack_native)
    assert wrong_width == parsed(payload, unpackb)
    assert wrong_width[2] == {"index": 0, "field": "inputs"}
    payload["inputs"] = [[1.0, 2.0, 3.0]] * 2
    payload["latency_us"] = [5.0, float("nan")]
    nan_latency = parsed(payload, unpack_native)
    assert nan_latency == parsed(payload, unpackb)
    assert nan_latency[2] == {"index": 1, "field": "latency_us"}
