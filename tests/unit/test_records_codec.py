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


def _window_outputs():
    """Every built-in application's outputs on one real window (plain objects)."""
    from modelmon_daemon.actors.application import ApplicationActor
    from modelmon_daemon.config import Settings
    from modelmon_daemon.core.records import WindowMeta
    from tests.helpers import make_batch, make_spec

    rng = np.random.default_rng(11)
    actor = ApplicationActor(0, Settings().to_dict())
    spec = make_spec("packed", n_features=3, seed=4).to_dict()
    batch = make_batch(
        np.arange(300.0), rng.normal(0.5, 1.0, size=(300, 3)), rng.integers(0, 2, 300)
    )
    meta = WindowMeta("packed", 0.0, 60.0, [1], 300)
    return [actor.run(name, spec, meta, batch) for name in actor.names()]


def test_application_outputs_cross_packed_and_read_back_as_the_objects_say():
    """An application call's answer crosses to the writer as msgpack bytes; read back,
    each window's outputs are what the objects' to_wire gives (results as to_dict)."""
    from modelmon_daemon.core.records import AppOutput, pack_outputs, unpack_outputs

    outputs = _window_outputs()
    assert any(o.results for o in outputs) and any(o.endpoint_updates for o in outputs)
    failed = AppOutput("broken", failure="ValueError: no")
    call = [outputs, None, [failed]]
    packed = pack_outputs(call)
    assert isinstance(packed, bytes)
    read = unpack_outputs(packed)
    assert read[1] is None
    assert [list(w) for w in read[0]] == [list(o.to_wire()) for o in outputs]
    assert [list(w) for w in read[2]] == [["broken", [], "ValueError: no", {}]]
    # the general_drift result, as the writer commits it
    (drift,) = [r for _, records, _, _ in read[0] for r in records if r["name"] == "general_drift"]
    assert drift["type"] == "result" and 0.0 <= drift["value"] <= 1.0


def test_outputs_msgpack_cannot_hold_cross_as_objects():
    """A user application's numpy integer in extra_data: the call's outputs stay objects
    (pickled by Ray as before) and read back the same way."""
    from modelmon_daemon.core.records import (
        AppOutput,
        ResultRecord,
        pack_outputs,
        unpack_outputs,
    )

    record = ResultRecord("user", "score", "metric", 0.5, 0.0, 60.0, extra={"n": np.int64(3)})
    call = [[AppOutput("user", [record])]]
    assert pack_outputs(call) is call
    ((wire,),) = unpack_outputs(call)
    assert wire[0] == "user" and wire[1][0]["extra"] == {"n": np.int64(3)}
    assert wire[1][0]["value"] == 0.5
