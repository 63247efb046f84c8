"""Stored records are written and read by msgspec's MessagePack codec: the same bytes
msgpack-python writes, and the same values it reads back, so data dirs written before
read the same, and any msgpack reader reads ours."""

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelmon_daemon.core.records import pack, unpack

keys = st.one_of(st.text(max_size=8), st.integers(-(2**63), 2**64 - 1))
leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.text(max_size=40),
    st.binary(max_size=300),
)
values = st.recursive(
    leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=6),
        st.dictionaries(keys, inner, max_size=6),
    ),
    max_leaves=40,
)


@settings(max_examples=300, deadline=None)
@given(values)
def test_bytes_and_values_are_msgpack_pythons(value):
    written = pack(value)
    assert written == msgpack.packb(value, use_bin_type=True)
    assert unpack(written) == msgpack.unpackb(written, raw=False, strict_map_key=False)


def test_numpy_floats_and_tuples_are_written_as_msgpack_python_writes_them():
    record = {"value": np.float64(0.25), "pair": (1, 2.5)}
    assert pack(record) == msgpack.packb(record, use_bin_type=True)
    assert unpack(pack(record)) == {"value": 0.25, "pair": [1, 2.5]}


@pytest.mark.parametrize("broken", [b"\xc1", b"\x92\x01", b"\x91\x01\x01", b""])
def test_malformed_bytes_raise_value_error(broken):
    with pytest.raises(ValueError):
        unpack(broken)


def test_integers_msgpack_cannot_hold_raise_overflow_error():
    with pytest.raises(OverflowError):
        pack({"n": 2**64})
