"""A list of MLRun prediction events decoded straight from its JSON bytes into typed
objects (msgspec), the fields the column path reads and no dict per event; the values in
them are the ones the plain decoder (orjson) gives, and the same column builder as the
dict path makes the batches. The common case only; anything else is None, and the body
is decoded as plain JSON and parsed as before (ingest/events.py), which names a bad
event's index and field. Results are equal to the per-event parser's (a property test
holds them equal)."""

from __future__ import annotations

from operator import attrgetter
from typing import Any

import msgspec
import numpy as np

from modelmon_daemon.ingest.events import (
    _COLUMN_PATH_ERRORS,
    COLUMN_PATH_EVENTS,
    IDENTITY_FIELDS,
    EventFields,
    ParsedRequest,
    ShapeLookup,
    batches_by_endpoint,
    mlrun_columns,
)

# orjson (the plain decoder) reads integers outside [-2**63, 2**64) as floats; msgspec
# keeps them as ints. As numbers both become the same float64 (each the nearest to the
# exact value); where the value itself is kept (an object column), the body goes the
# plain way.
_ORJSON_INTS = (-(2**63), 2**64)
_IDENTITY = attrgetter(*IDENTITY_FIELDS)  # an event's identity, as the dict path reads it


class _Request(msgspec.Struct, gc=False):
    inputs: list[list[Any]]  # rows (a flat row goes the plain way, which unwraps it)
    id: str | None = None  # MLRun sends strings; anything else goes the plain way


class _Response(msgspec.Struct, gc=False):
    outputs: list[Any]
    id: str | None = None


class _Event(msgspec.Struct, gc=False):
    """The fields the column path reads; other fields are ignored, as by the dict parser.
    `headers`/`values` (a batched push) and `error` send the request the plain way."""

    request: _Request
    resp: _Response
    endpoint_id: str | None = None
    function_uri: str | None = None
    model: str | None = None
    version: str | None = None
    when: Any = None
    microsec: Any = None
    effective_sample_count: Any = 1
    sampling_percentage: Any = 100
    error: Any = None
    headers: Any = msgspec.UNSET
    values: Any = msgspec.UNSET


_DECODER = msgspec.json.Decoder(list[_Event])


def looks_like_a_list(body: bytes) -> bool:
    """A JSON array (the only form this path reads): the first byte that is not space."""
    return body[:1] == b"[" or body.lstrip()[:1] == b"["


def parse_mlrun_json(body: bytes, known_shape: ShapeLookup, now: float) -> ParsedRequest | None:
    """The events of a JSON list body, or None when it is not only the common case: at
    least COLUMN_PATH_EVENTS predictions without error of known endpoints, rows as lists,
    string (or no) request ids and identity fields."""
    if not looks_like_a_list(body):
        return None
    try:
        events = _DECODER.decode(body)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    if len(events) < COLUMN_PATH_EVENTS:
        return None
    for e in events:
        if e.error is not None or e.headers is not msgspec.UNSET or e.values is not msgspec.UNSET:
            return None
    identities = list(map(_IDENTITY, events))

    def event_at(i: int) -> dict[str, Any]:
        return dict(zip(IDENTITY_FIELDS, identities[i], strict=True))

    def batch_of(indices: list[int], shape: tuple[int, int, tuple[int, ...]]) -> Any:
        subset = events if len(indices) == len(events) else [events[i] for i in indices]
        batch = mlrun_columns(_fields(subset), shape, now)
        if batch is None or _big_ints_as_objects([*batch.outputs, *batch.categorical.values()]):
            return None
        return batch

    try:
        return batches_by_endpoint(identities, event_at, batch_of, known_shape)
    except _COLUMN_PATH_ERRORS:
        return None


def _fields(events: list[_Event]) -> EventFields:
    requests = [e.request for e in events]
    return EventFields(
        inputs=[r.inputs for r in requests],
        outputs=[e.resp.outputs for e in events],
        whens=[e.when for e in events],
        micros=[e.microsec for e in events],
        sample_counts=[e.effective_sample_count for e in events],
        percentages=[e.sampling_percentage for e in events],
        request_ids=[r.id for r in requests],
        response_ids=lambda: [e.resp.id for e in events],
    )


def _big_ints_as_objects(columns: list[np.ndarray]) -> bool:
    """An object column (outputs with strings or booleans, categorical values) holding an
    integer orjson would have read as a float."""
    low, high = _ORJSON_INTS
    return any(
        column.dtype == object
        and any(type(v) is int and not low <= v < high for v in column.tolist())
        for column in columns
    )
