"""A body that does not decode gets a 400 that says why, whatever the decoder said."""

from __future__ import annotations

import msgpack
import pytest

from modelmon_daemon.core.errors import ApiError
from modelmon_daemon.server.ingest_routes import decode


@pytest.mark.parametrize(
    ("raw", "columns", "why"),
    [
        (b"\xc1", False, "malformed bytes (FormatError)"),  # a byte no value starts with
        (b"\xc1", True, "malformed bytes (FormatError)"),
        (b"\x92\x01", False, "incomplete input"),  # an array of two with one item
        (msgpack.packb([1]) + b"\x01", False, "extra data"),
    ],
)
def test_bad_msgpack_is_a_400_naming_the_body_and_the_reason(raw, columns, why):
    with pytest.raises(ApiError) as caught:
        decode(raw, "application/msgpack", columns=columns)
    error = caught.value
    assert error.status == 400 and error.code == "invalid_body"
    assert error.details == {"field": "body"}
    assert error.message.startswith("body is not valid msgpack: ")
    assert why in error.message


def test_bad_json_and_empty_bodies_are_400s_naming_the_body():
    with pytest.raises(ApiError, match=r"not valid JSON: .*line 1 column 2"):
        decode(b"{not json", "application/json")
    with pytest.raises(ApiError, match="empty request body"):
        decode(b"", "application/msgpack")
    assert decode(msgpack.packb({"a": [1.5]}), "application/msgpack") == {"a": [1.5]}
