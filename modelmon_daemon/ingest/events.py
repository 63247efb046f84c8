"""Incoming events -> ColumnBatch per endpoint, validating every field.

Two forms: MLRun serving events (one dict, a list, JSON or msgpack) and the native
columnar form of one endpoint. A request is checked whole before anything is kept:
the first bad event raises InvalidEvent naming its index and field.
"""

from __future__ import annotations

import itertools
import math
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.core.identity import (
    UID_PATTERN,
    FunctionUri,
    endpoint_uid,
    model_labels,
    split_versioned_model,
)
from modelmon_daemon.core.records import ColumnBatch, GeneratedIds, RequestIds
from modelmon_daemon.core.times import MAX_FUTURE_S, event_time, iso, parse_time, query_time

__all__ = ["event_time", "iso", "parse_time", "query_time"]


@dataclass
class EndpointGuess:
    """Identity of an endpoint seen first in an MLRun event (MLRun registers it then)."""

    uid: str
    project: str
    name: str
    function_uri: str
    model: str
    n_features: int
    n_outputs: int
    categorical: tuple[int, ...] = ()
    model_class: str = ""
    version: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # names from the first event's `request.input_schema` / `resp.output_schema` (what
    # MLRun's flow serving sends), or None for f0..fN and output / output_0..N
    feature_names: list[str] | None = None
    label_names: list[str] | None = None


@dataclass
class ParsedRequest:
    batches: dict[str, ColumnBatch] = field(default_factory=dict)
    new_endpoints: dict[str, EndpointGuess] = field(default_factory=dict)
    events: int = 0

    @property
    def rows(self) -> int:
        return sum(len(b) for b in self.batches.values())


# (n_features, n_outputs, categorical feature indices) of a known endpoint, or None
ShapeLookup = Callable[[str], "tuple[int, int, tuple[int, ...]] | None"]
CATEGORY_TYPES = (str, int, float, bool)


def _split_rows(
    rows: list[Any],
    n_features: int,
    categorical: tuple[int, ...],
    index_of_row: Sequence[int],
    field: str,
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Rows -> numeric matrix and, for categorical positions, object arrays of values
    (their matrix column stays NaN). Without categorical features: one numpy call."""
    if not categorical:
        return _float_rows(rows, n_features, index_of_row, field), {}
    values: dict[int, list[Any]] = {j: [] for j in categorical}
    numeric_rows = []
    for r, row in enumerate(rows):
        if not isinstance(row, list | tuple) or len(row) != n_features:
            _float_rows([row], n_features, [index_of_row[r]], field)  # raises the clear error
        row = list(row)
        for j in categorical:
            value = row[j]
            if value is not None and not isinstance(value, CATEGORY_TYPES):
                raise InvalidEvent(
                    index_of_row[r],
                    f"{field}[{j}]",
                    f"categorical value must be a string, number or null, got {value!r}",
                )
            values[j].append(value)
            row[j] = None
        numeric_rows.append(row)
    matrix = _float_rows(numeric_rows, n_features, index_of_row, field)
    return matrix, {j: _objects(v) for j, v in values.items()}


def _finite(matrix: np.ndarray, index_of_row: Sequence[int], field: str) -> np.ndarray:
    """Infinity (msgpack can carry it) is no feature value: refused, naming the row."""
    infinite = np.isinf(matrix)
    if infinite.any():
        r, j = (int(v[0]) for v in np.nonzero(infinite.reshape(matrix.shape[0], -1)))
        raise InvalidEvent(index_of_row[r], f"{field}[{j}]", "feature value must be finite")
    return matrix


def _float_rows(
    rows: list[Any], n_features: int, index_of_row: Sequence[int], field: str
) -> np.ndarray:
    try:
        if rows and set(map(len, rows)) == {n_features} and set(map(type, rows)) <= {list, tuple}:
            # a third faster than np.array on lists of rows; a null (NaN) makes it raise
            try:
                flat = itertools.chain.from_iterable(rows)
                matrix = np.fromiter(flat, np.float64, len(rows) * n_features)
                return _finite(matrix.reshape(len(rows), n_features), index_of_row, field)
            except (ValueError, TypeError):
                pass
        matrix = np.array(rows, dtype=np.float64)
        if matrix.ndim == 2 and matrix.shape[1] == n_features:
            return _finite(matrix, index_of_row, field)
        if matrix.ndim == 1 and matrix.shape[0] == 0:
            return np.empty((0, n_features))
    except (ValueError, TypeError):
        pass
    for r, row in enumerate(rows):
        if not isinstance(row, list | tuple):
            raise InvalidEvent(index_of_row[r], field, f"row must be a list of {n_features} values")
        if len(row) != n_features:
            raise InvalidEvent(
                index_of_row[r],
                field,
                f"row has {len(row)} values, the endpoint has {n_features} features",
            )
        for j, value in enumerate(row):
            if value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)
            ):
                raise InvalidEvent(
                    index_of_row[r],
                    f"{field}[{j}]",
                    f"feature value must be a number or null, got {value!r}",
                )
    raise InvalidEvent(None, field, "rows could not be read as numbers")


OUTPUT_TYPES = (str, int, float, bool)


def _output_columns(
    values: list[Any],
    n_outputs: int,
    field: str = "outputs",
    index_of_row: Sequence[int] | None = None,
) -> list[np.ndarray]:
    """One array per output; numeric outputs as float64, anything else as objects. A single
    output sent as a one-element row (`[0]`, as many models return it) is that value."""
    if n_outputs == 0:
        return []
    if n_outputs == 1:
        wrapped = set(map(type, values)) & {list, tuple}
        cols = [
            [v[0] if isinstance(v, list | tuple) and len(v) == 1 else v for v in values]
            if wrapped
            else values
        ]
    else:
        cols = [[None if v is None else v[j] for v in values] for j in range(n_outputs)]
    out = []
    for col in cols:
        try:
            numeric = np.array(col, dtype=np.float64)  # one C pass; strings raise
            if numeric.ndim != 1:
                raise TypeError
            # numpy reads True as 1.0: booleans stay objects (classes), checked only then
            if (
                numeric.size
                and np.any((numeric == 0) | (numeric == 1))
                and bool in set(map(type, col))
            ):
                raise TypeError
            out.append(_finite_outputs(numeric, field, index_of_row))
        except (TypeError, ValueError):
            for r, v in enumerate(col):
                if v is not None and not isinstance(v, OUTPUT_TYPES):
                    raise InvalidEvent(
                        index_of_row[r] if index_of_row is not None else r,
                        field,
                        f"output must be a number, string, boolean or null, got {type(v).__name__}",
                    ) from None
            arr = np.empty(len(col), dtype=object)
            arr[:] = col
            out.append(arr)
    return out


def _finite_outputs(
    numeric: np.ndarray, field: str, index_of_row: Sequence[int] | None
) -> np.ndarray:
    """Numeric outputs; NaN is a missing output, infinity is refused naming its row."""
    if np.isinf(numeric).any():
        bad = int(np.flatnonzero(np.isinf(numeric))[0])
        raise InvalidEvent(
            index_of_row[bad] if index_of_row is not None else bad,
            field,
            "output must be a finite number",
        )
    return numeric


def _output_width(value: Any) -> int:
    return len(value) if isinstance(value, list | tuple) else 1


def parse_mlrun_events(
    payload: Any, known_shape: ShapeLookup, now: float, base_period: float | None = None
) -> ParsedRequest:
    """MLRun serving events -> one ColumnBatch per endpoint uid. A batched push (MLRun
    1.7 with log_stream_batch > 1: `headers` + `values`) counts as its values' events;
    errors in one name the push's index and `values[k].field`."""
    events = payload if isinstance(payload, list) else [payload]
    if not events:
        raise InvalidEvent(None, "body", "no events")
    if any(isinstance(e, dict) and "headers" in e and "values" in e for e in events):
        expanded, origins = _expand_batches(events)
        try:
            parsed = parse_mlrun_events(expanded, known_shape, now, base_period)
        except InvalidEvent as exc:
            index = exc.details.get("index")
            origin, prefix = origins[index] if isinstance(index, int) else (None, "")
            raise InvalidEvent(origin, prefix + str(exc.details.get("field")), exc.reason) from None
        parsed.events = len(expanded)
        return parsed
    if len(events) >= COLUMN_PATH_EVENTS:
        fast = _parse_mlrun_columns(events, known_shape, now)
        if fast is not None:
            return fast
    elif len(events) == 1:
        single = _parse_mlrun_single(events[0], known_shape, now)
        if single is not None:
            return single
    return _parse_mlrun_per_event(events, known_shape, now)


COLUMN_PATH_EVENTS = 16  # below, the column path's fixed cost is more than it saves


def _parse_mlrun_per_event(
    events: list[Any], known_shape: ShapeLookup, now: float
) -> ParsedRequest:
    """Every event on its own: any form MLRun sends, and the first bad event named."""
    per_uid: dict[str, dict[str, list[Any]]] = {}
    shapes: dict[str, tuple[int, int, tuple[int, ...]]] = {}
    parsed = ParsedRequest(events=len(events))
    identities: dict[tuple[Any, ...], tuple[str, EndpointGuess | None]] = {}
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise InvalidEvent(i, "event", "must be an object")
        # events of one request mostly share their identity: parse it once per identity
        identity = (
            event.get("endpoint_id"),
            event.get("function_uri"),
            event.get("model"),
            event.get("version"),
            event.get("class"),
            event.get("model_class"),
        )
        try:
            known = identities.get(identity)
        except TypeError:  # an unhashable field: validated (and refused) below
            known = None
        if known is None:
            known = _event_endpoint(i, event)
            try:
                identities[identity] = known
            except TypeError:
                pass
        uid, guess = known
        request = event.get("request")
        if not isinstance(request, dict):
            raise InvalidEvent(i, "request", "missing or not an object")
        inputs = request.get("inputs")
        error = event.get("error")
        if error is not None and not isinstance(error, str):
            error = str(error)
        if inputs is None and error is not None:
            inputs = []
        if not isinstance(inputs, list):
            raise InvalidEvent(i, "request.inputs", "missing or not a list of rows")
        if inputs and not isinstance(inputs[0], list | tuple):
            inputs = [inputs]  # a single row sent flat
        resp = event.get("resp")
        outputs: list[Any] | None = None
        if resp is not None:
            if not isinstance(resp, dict):
                raise InvalidEvent(i, "resp", "must be an object")
            outputs = resp.get("outputs")
            if outputs is not None and not isinstance(outputs, list):
                outputs = [outputs]
            elif _one_row_flat(inputs, outputs):
                outputs = [outputs]  # one row's several outputs sent flat, as MLRun reads it
        if outputs is None and error is None:
            raise InvalidEvent(i, "resp.outputs", "missing (an event without outputs needs error)")
        if outputs is not None and len(outputs) != len(inputs):
            raise InvalidEvent(
                i, "resp.outputs", f"has {len(outputs)} values for {len(inputs)} input rows"
            )
        when = event.get("when")
        try:
            ts = now if when is None else event_time(when, now)
        except ValueError as exc:
            raise InvalidEvent(i, "when", str(exc)) from None
        # MLRun samples the rows of predictions, never error events
        weight = 1.0 if error is not None else _sampling_weight(i, event, max(len(inputs), 1))
        micro = event.get("microsec")
        if micro is not None and not _is_latency(micro):
            raise InvalidEvent(i, "microsec", f"must be a non-negative number, got {micro!r}")
        if isinstance(micro, float):  # MLRun's flow path sends seconds; its router, int µs
            micro = micro * 1e6
        shape = shapes.get(uid) or known_shape(uid)
        if shape is None:
            if guess is None:
                raise InvalidEvent(i, "endpoint_id", f"unknown endpoint {uid!r}")
            if not inputs:
                raise InvalidEvent(i, "request.inputs", "first event of a new endpoint has no rows")
            width = len(inputs[0]) if isinstance(inputs[0], list | tuple) else -1
            n_out = _output_width(outputs[0]) if outputs else 1
            # string values in the first row make those features categorical
            cats = (
                tuple(j for j, v in enumerate(inputs[0]) if isinstance(v, str)) if width > 0 else ()
            )
            shape = (width, n_out, cats)
            guess.n_features, guess.n_outputs, guess.categorical = shape
            guess.feature_names = schema_names(request.get("input_schema"), width)
            guess.label_names = schema_names((resp or {}).get("output_schema"), n_out)
            parsed.new_endpoints[uid] = guess
        shapes[uid] = shape
        n_features, n_outputs, _ = shape
        if outputs is not None:
            for r, value in enumerate(outputs):
                if _output_width(value) != n_outputs:
                    raise InvalidEvent(
                        i,
                        f"resp.outputs[{r}]",
                        f"has {_output_width(value)} values, the endpoint has {n_outputs} outputs",
                    )
        acc = per_uid.setdefault(
            uid,
            {
                "rows": [],
                "row_event": [],
                "outputs": [],
                "ts": [],
                "lat": [],
                "rid": [],
                "err": [],
                "error_events": [0],
                "weight": [],
            },
        )
        rid = request.get("id") or (resp or {}).get("id") or uuid.uuid4().hex
        rows = inputs if inputs else [[None] * n_features]
        n_rows = len(rows)
        acc["rows"].extend(rows)
        acc["row_event"].extend([i] * n_rows)
        acc["outputs"].extend(outputs if outputs is not None else [None] * n_rows)
        acc["ts"].extend([ts] * n_rows)
        acc["lat"].extend([math.nan if micro is None else float(micro)] * n_rows)
        acc["rid"].extend([str(rid)] if n_rows == 1 else [f"{rid}-{r}" for r in range(n_rows)])
        acc["err"].extend([error] * n_rows)
        acc["weight"].extend([weight] * n_rows)
        if error is not None:
            acc["error_events"][0] += 1
    for uid, acc in per_uid.items():
        n_features, n_outputs, cats = shapes[uid]
        features, categorical = _split_rows(
            acc["rows"], n_features, cats, acc["row_event"], "request.inputs"
        )
        parsed.batches[uid] = ColumnBatch(
            timestamps=np.asarray(acc["ts"], dtype=np.float64),
            features=features,
            outputs=_output_columns(acc["outputs"], n_outputs, "resp.outputs", acc["row_event"]),
            request_ids=_objects(acc["rid"]),
            latency_us=np.asarray(acc["lat"], dtype=np.float64),
            errors=_objects(acc["err"]),
            error_events=acc["error_events"][0],
            categorical=categorical,
            weights=None
            if all(w == 1.0 for w in acc["weight"])
            else np.asarray(acc["weight"], dtype=np.float64),
        )
    return parsed


MAX_SCHEMA_NAME = 256


def schema_names(schema: Any, count: int) -> list[str] | None:
    """An event's `input_schema` / `output_schema` as column names, when it names each
    of `count` columns once (non-empty strings of at most MAX_SCHEMA_NAME characters);
    None otherwise: the schema is advice (MLRun passes it on unchecked), never a reason
    to refuse an event."""
    if type(schema) is not list or len(schema) != count or count < 1:
        return None
    if not all(type(name) is str and 0 < len(name) <= MAX_SCHEMA_NAME for name in schema):
        return None
    return list(schema) if len(set(schema)) == count else None


def _one_row_flat(inputs: list[Any], outputs: list[Any] | None) -> bool:
    """One input row and several outputs none of which is a list: MLRun's stream
    processing reads them as that row's outputs (`[0.1, 0.9]` for one row is `[[0.1,
    0.9]]`). With several rows the counts must match: MLRun would pair them by zip and
    silently drop the rest, here the event is refused."""
    return (
        len(inputs) == 1
        and outputs is not None
        and len(outputs) > 1
        and not any(isinstance(value, list | tuple) for value in outputs)
    )


_IDENTITIES: dict[tuple[Any, ...], str] = {}  # an event's identity fields -> its uid
_IDENTITIES_KEPT = 4096
_EXACT_INT = 2**53  # ints up to this convert to float64 exactly, as numpy converts them


def _known_uid(event: dict[str, Any]) -> str | None:
    """The event's endpoint uid, remembered per identity (a model server sends the same
    few identities over and over): _event_endpoint hashes and parses them once."""
    identity = (
        event.get("endpoint_id"),
        event.get("function_uri"),
        event.get("model"),
        event.get("version"),
    )
    if not all(v is None or type(v) is str for v in identity):
        return None  # kept only for strings: 1 and 1.0 are one key, yet two versions
    uid = _IDENTITIES.get(identity)
    if uid is None:
        try:
            uid, _ = _event_endpoint(0, event)
        except InvalidEvent:
            return None  # the per-event parser names the field
        if len(_IDENTITIES) >= _IDENTITIES_KEPT:
            _IDENTITIES.clear()
        _IDENTITIES[identity] = uid
    return uid


def _plain_number(value: Any) -> bool:
    """A finite float, or an int float64 holds exactly (not a bool, not NaN)."""
    kind = type(value)
    if kind is float:
        return -math.inf < value < math.inf
    return kind is int and -_EXACT_INT <= value <= _EXACT_INT


def _parse_mlrun_single(event: Any, known_shape: ShapeLookup, now: float) -> ParsedRequest | None:
    """One prediction event, the form a model server posts most often, without numpy's
    per-array overhead: a known endpoint without categorical features, one row of plain
    numbers, one output (a number, a one-element list, or a string), no error, no batch.
    None for anything else: the per-event parser then decides, and names a bad field.
    Results are equal to the per-event parser's (a property test holds them equal)."""
    if type(event) is not dict or "error" in event or "headers" in event:
        return None
    request, resp = event.get("request"), event.get("resp")
    if type(request) is not dict or type(resp) is not dict:
        return None
    inputs, outputs = request.get("inputs"), resp.get("outputs")
    if type(inputs) is not list or type(outputs) is not list:
        return None
    if len(inputs) != 1 or len(outputs) != 1 or type(inputs[0]) not in (list, tuple):
        return None
    uid = _known_uid(event)
    if uid is None:
        return None
    shape = known_shape(uid)
    if shape is None or shape[1] != 1 or shape[2]:
        return None
    row = inputs[0]
    if len(row) != shape[0] or not all(map(_plain_number, row)):
        return None
    value = outputs[0]
    if type(value) in (list, tuple) and len(value) == 1:
        value = value[0]
    if _plain_number(value):
        output = np.array([value], dtype=np.float64)
    elif type(value) is str:
        try:  # numpy reads "1.5" as a number: that case is the per-event parser's
            np.array([value], dtype=np.float64)
            return None
        except ValueError:
            pass
        output = np.empty(1, dtype=object)
        output[0] = value
    else:
        return None
    when, micro = event.get("when"), event.get("microsec")
    if micro is not None and not _is_latency(micro):
        return None
    try:
        ts = now if when is None else event_time(when, now)
        weight = _sampling_weight(0, event, 1)
    except (ValueError, InvalidEvent):
        return None
    if isinstance(micro, float):  # seconds (MLRun's flow path), as the per-event parser
        micro = micro * 1e6
    rid = request.get("id") or resp.get("id") or uuid.uuid4().hex
    ids = np.empty(1, dtype=object)
    ids[0] = str(rid)
    parsed = ParsedRequest(events=1)
    parsed.batches[uid] = ColumnBatch(
        timestamps=np.array([ts], dtype=np.float64),
        features=np.array([row], dtype=np.float64),
        outputs=[output],
        request_ids=ids,
        latency_us=np.array([math.nan if micro is None else float(micro)], dtype=np.float64),
        errors=np.empty(1, dtype=object),
        error_events=0,
        categorical={},
        weights=None if weight == 1.0 else np.array([weight], dtype=np.float64),
    )
    return parsed


_COLUMN_PATH_ERRORS = (InvalidEvent, KeyError, TypeError, ValueError, AttributeError, IndexError)
_NUMBER = {int, float}


def _parse_mlrun_columns(
    events: list[Any], known_shape: ShapeLookup, now: float
) -> ParsedRequest | None:
    """The common case column-wise: every event a prediction (no error) of a known
    endpoint, rows as lists, numbers where numbers belong. Each field is gathered with one
    comprehension and checked with one numpy or set operation instead of a dozen Python
    steps per event. None means "not only the common case": the per-event parser then
    decides, and is the one that names a bad event's index and field. Results are equal
    to the per-event parser's (a property test holds them equal)."""
    try:
        identities = [tuple(map(e.get, IDENTITY_FIELDS)) for e in events]
        return batches_by_endpoint(
            identities,
            lambda i: events[i],
            lambda indices, shape: _mlrun_column_batch(
                events if len(indices) == len(events) else [events[i] for i in indices],
                shape,
                now,
            ),
            known_shape,
        )
    except _COLUMN_PATH_ERRORS:
        return None


Identity = tuple[Any, Any, Any, Any]  # the values of IDENTITY_FIELDS
IDENTITY_FIELDS = ("endpoint_id", "function_uri", "model", "version")


def batches_by_endpoint(
    identities: list[Identity],
    event_at: Callable[[int], dict[str, Any]],
    batch_of: Callable[[list[int], tuple[int, int, tuple[int, ...]]], ColumnBatch | None],
    known_shape: ShapeLookup,
) -> ParsedRequest | None:
    """Events grouped by their identity, each group's uid and shape looked up and its
    batch built by `batch_of(indices, shape)`; None when an endpoint is new, one uid is
    spelled two ways, or a batch is not the common case. `event_at(i)`: the event's
    identity fields as a dict (for _event_endpoint, which may raise InvalidEvent)."""
    groups: dict[Identity, list[int]] = {}
    if len(set(identities)) == 1:
        groups[identities[0]] = list(range(len(identities)))
    else:
        for i, identity in enumerate(identities):
            groups.setdefault(identity, []).append(i)
    parsed = ParsedRequest(events=len(identities))
    for indices in groups.values():
        uid, _ = _event_endpoint(indices[0], event_at(indices[0]))
        shape = known_shape(uid)
        if shape is None or uid in parsed.batches:
            return None  # a new endpoint, or one uid spelled two ways
        batch = batch_of(indices, shape)
        if batch is None:
            return None
        parsed.batches[uid] = batch
    return parsed


def _mlrun_column_batch(
    events: list[Any], shape: tuple[int, int, tuple[int, ...]], now: float
) -> ColumnBatch | None:
    if any([e.get("error") is not None for e in events]):
        return None
    requests = [e["request"] for e in events]
    responses = [e["resp"] for e in events]
    if set(map(type, requests)) != {dict} or set(map(type, responses)) != {dict}:
        return None
    inputs = [r["inputs"] for r in requests]
    outputs = [r["outputs"] for r in responses]
    if set(map(type, inputs)) != {list} or set(map(type, outputs)) != {list}:
        return None
    return mlrun_columns(
        EventFields(
            inputs=inputs,
            outputs=outputs,
            whens=[e.get("when") for e in events],
            micros=[e.get("microsec") for e in events],
            sample_counts=[e.get("effective_sample_count", 1) for e in events],
            percentages=[e.get("sampling_percentage", 100) for e in events],
            request_ids=[r.get("id") for r in requests],
            response_ids=lambda: [r.get("id") for r in responses],
        ),
        shape,
        now,
    )


@dataclass
class EventFields:
    """The fields of a list of prediction events the column path reads, one list each
    (gathered from dicts, or from a typed decoder's objects: ingest/mlrun_json.py).
    `inputs` and `outputs` are lists, one per event."""

    inputs: list[list[Any]]
    outputs: list[list[Any]]
    whens: list[Any]
    micros: list[Any]
    sample_counts: list[Any]
    percentages: list[Any]
    request_ids: list[Any]
    response_ids: Callable[[], list[Any]]  # read only when a request id is missing


def mlrun_columns(
    fields: EventFields, shape: tuple[int, int, tuple[int, ...]], now: float
) -> ColumnBatch | None:
    """One endpoint's prediction events as columns, or None when they are not only the
    common case (the per-event parser then decides and names a bad field)."""
    n_features, n_outputs, categorical = shape
    inputs, outputs = fields.inputs, fields.outputs
    counts = list(map(len, inputs))
    if counts != list(map(len, outputs)) or min(counts) < 1:
        return None
    single_rows = max(counts) == 1
    if single_rows:
        rows = [x[0] for x in inputs]
        values = [x[0] for x in outputs]
    else:
        rows = [row for x in inputs for row in x]
        values = [v for x in outputs for v in x]
    if not set(map(type, rows)) <= {list, tuple}:
        return None  # a single row sent flat: the per-event parser unwraps it
    value_types = set(map(type, values))
    if n_outputs == 1:
        if value_types & {list, tuple} and any(
            [len(v) != 1 for v in values if type(v) in (list, tuple)]
        ):
            return None
    elif not value_types <= {list, tuple} or set(map(len, values)) != {n_outputs}:
        return None
    n = len(inputs)
    times = _event_times(fields.whens, now)
    latency = _event_latencies(fields.micros)
    sample_counts, percentages = fields.sample_counts, fields.percentages
    if times is None or latency is None:
        return None
    if not set(map(type, sample_counts)) <= _NUMBER or not set(map(type, percentages)) <= _NUMBER:
        return None
    count = np.array(sample_counts, dtype=np.float64)
    percentage = np.array(percentages, dtype=np.float64)
    if not (np.isfinite(count) & (count > 0) & (percentage > 0) & (percentage <= 100)).all():
        return None
    stands_for = count * 100.0 / percentage
    if not (stands_for <= MAX_PREDICTIONS_PER_EVENT).all():
        return None  # the per-event parser names the event
    weight = stands_for / np.asarray(counts, dtype=np.float64)
    ids = fields.request_ids
    if not all(ids):
        ids = [
            rid or sid or uuid.uuid4().hex
            for rid, sid in zip(ids, fields.response_ids(), strict=True)
        ]
    if set(map(type, ids)) != {str}:
        ids = [str(rid) for rid in ids]
    if single_rows:
        row_event: Sequence[int] = range(n)
        request_ids = ids
    else:
        row_event = np.repeat(np.arange(n), counts).tolist()
        request_ids = [
            rid if k == 1 else f"{rid}-{r}"
            for rid, k in zip(ids, counts, strict=True)
            for r in range(k)
        ]
        times, latency, weight = (np.repeat(a, counts) for a in (times, latency, weight))
    features, categories = _split_rows(rows, n_features, categorical, row_event, "request.inputs")
    return ColumnBatch(
        timestamps=times,
        features=features,
        outputs=_output_columns(values, n_outputs, "resp.outputs", row_event),
        request_ids=_objects(request_ids),
        latency_us=latency,
        errors=np.full(len(rows), None, dtype=object),
        error_events=0,
        categorical=categories,
        weights=None if (weight == 1.0).all() else weight,
    )


def _event_times(whens: list[Any], now: float) -> np.ndarray | None:
    """Epoch seconds of MLRun's `when` strings, read column-wise; only the canonical form
    MLRun sends ("YYYY-MM-DD HH:MM:SS[.ffffff]", or with "T") of a valid date and time is
    taken here, so the result is the one datetime.fromisoformat gives (None: let the
    per-event parser decide)."""
    kinds = set(map(type, whens))
    if kinds == {type(None)}:
        return np.full(len(whens), now, dtype=np.float64)
    if kinds <= _NUMBER:
        seconds = np.array(whens, dtype=np.float64)
    elif kinds == {str}:
        lengths = set(map(len, whens))
        if len(lengths) != 1 or (width := lengths.pop()) not in (19, 26):
            return None
        micros = canonical_time_micros(np.array(whens, dtype=f"<U{width}"))
        if micros is None:
            return None
        seconds = micros / 1e6
    else:
        return None
    if not (np.isfinite(seconds) & (seconds >= 0.0) & (seconds <= now + MAX_FUTURE_S)).all():
        return None
    return seconds


_DIGITS_19 = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_DIGITS_26 = np.concatenate([_DIGITS_19, np.arange(20, 26)])


def canonical_time_micros(text: np.ndarray) -> np.ndarray | None:
    """Microseconds since 1970 of fixed-width "YYYY-MM-DD HH:MM:SS" (width 19) or
    "...SS.ffffff" (width 26) strings, "T" or " " between date and time, naive = UTC; None
    unless every string is one of those with a real date and time (year >= 1, February 29
    only in leap years, hour <= 23, second <= 59), as datetime.fromisoformat reads them.
    Integer arithmetic on the characters' code points; the calendar is numpy's."""
    n, width = text.shape[0], text.dtype.itemsize // 4
    # one row per character position (contiguous), digits as unsigned offsets from "0"
    codes = np.ascontiguousarray(text.view(np.uint32).reshape(n, width).T)
    d = (codes[_DIGITS_26 if width == 26 else _DIGITS_19] - np.uint32(ord("0"))).astype(np.int64)
    if not (d <= 9).all():  # anything below "0" wrapped around, so one test is enough
        return None
    separators = (
        (codes[4] == ord("-"))
        & (codes[7] == ord("-"))
        & ((codes[10] == ord(" ")) | (codes[10] == ord("T")))
        & (codes[13] == ord(":"))
        & (codes[16] == ord(":"))
    )
    if width == 26:
        separators &= codes[19] == ord(".")
    if not separators.all():
        return None
    year = d[0] * 1000 + d[1] * 100 + d[2] * 10 + d[3]
    month = d[4] * 10 + d[5]
    day = d[6] * 10 + d[7]
    hour = d[8] * 10 + d[9]
    minute = d[10] * 10 + d[11]
    second = d[12] * 10 + d[13]
    fraction = np.zeros(n, dtype=np.int64)
    for k in range(14, d.shape[0]):
        fraction = fraction * 10 + d[k]
    if not ((year >= 1) & (month >= 1) & (month <= 12) & (day >= 1)).all():
        return None
    # numpy's proleptic Gregorian calendar: each month's first day, and the next month's
    months = ((year - 1970) * 12 + month - 1).astype("datetime64[M]")
    first = months.astype("datetime64[D]").astype(np.int64)
    following = (months + 1).astype("datetime64[D]").astype(np.int64)
    if not ((day <= following - first) & (hour <= 23) & (minute <= 59) & (second <= 59)).all():
        return None
    days = first + day - 1
    seconds = ((days * 24 + hour) * 60 + minute) * 60 + second
    micros: np.ndarray = seconds * 1_000_000 + fraction
    return micros


def _event_latencies(micros: list[Any]) -> np.ndarray | None:
    """`microsec`: MLRun's router sends integer microseconds, its flow float seconds."""
    kinds = set(map(type, micros))
    if kinds == {type(None)}:
        return np.full(len(micros), math.nan)
    if kinds not in ({int}, {float}):
        return None
    values = np.array(micros, dtype=np.float64)
    if not (np.isfinite(values) & (values >= 0) & (values < 3.2e13)).all():
        return None
    return values * 1e6 if kinds == {float} else values


def _expand_batches(events: list[Any]) -> tuple[list[Any], list[tuple[int, str]]]:
    """Batched pushes as plain events: the push's fields plus one row of `values` named by
    `headers` each. Returns the events and, for each, (push index, field prefix)."""
    out: list[Any] = []
    origins: list[tuple[int, str]] = []
    for i, event in enumerate(events):
        if not (isinstance(event, dict) and "headers" in event and "values" in event):
            out.append(event)
            origins.append((i, ""))
            continue
        headers, values = event["headers"], event["values"]
        if not isinstance(headers, list) or not all(isinstance(h, str) for h in headers):
            raise InvalidEvent(i, "headers", "must be a list of field names")
        if not isinstance(values, list) or not values:
            raise InvalidEvent(i, "values", "must be a non-empty list of rows")
        base = {k: v for k, v in event.items() if k not in ("headers", "values")}
        for k, row in enumerate(values):
            if not isinstance(row, list) or len(row) != len(headers):
                raise InvalidEvent(i, f"values[{k}]", f"must be a list of {len(headers)} values")
            out.append({**base, **dict(zip(headers, row, strict=True))})
            origins.append((i, f"values[{k}]."))
    return out, origins


# what one sampled event may stand for: far beyond any real rate, and counts of such
# events stay exact integers in every read (a count past 2**63 broke the JSON of records)
MAX_PREDICTIONS_PER_EVENT = 1e12


def _sampling_weight(i: int, event: dict[str, Any], rows: int) -> float:
    """Predictions each row of the event stands for, as MLRun estimates them:
    effective_sample_count (default 1) x 100 / sampling_percentage (default 100), spread
    over the event's rows. MLRun's serving sends effective_sample_count = the rows."""
    count = event.get("effective_sample_count", 1)
    percentage = event.get("sampling_percentage", 100)
    if isinstance(count, bool) or not isinstance(count, int | float) or not count > 0:
        raise InvalidEvent(i, "effective_sample_count", f"must be a positive number, got {count!r}")
    if (
        isinstance(percentage, bool)
        or not isinstance(percentage, int | float)
        or not 0 < percentage <= 100
    ):
        raise InvalidEvent(
            i, "sampling_percentage", f"must be a number in (0, 100], got {percentage!r}"
        )
    if not math.isfinite(count):
        raise InvalidEvent(i, "effective_sample_count", f"must be finite, got {count!r}")
    stands_for = float(count) * 100.0 / float(percentage)
    if stands_for > MAX_PREDICTIONS_PER_EVENT:
        field = (
            "sampling_percentage" if "sampling_percentage" in event else "effective_sample_count"
        )
        raise InvalidEvent(
            i,
            field,
            f"effective_sample_count x 100 / sampling_percentage is {stands_for:.3g} "
            f"predictions, more than {MAX_PREDICTIONS_PER_EVENT:.0e} for one event",
        )
    return stands_for / rows


def _objects(values: Sequence[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = list(values)
    return out


def _event_endpoint(i: int, event: dict[str, Any]) -> tuple[str, EndpointGuess | None]:
    """The event's endpoint uid, and its identity should the endpoint be new. MLRun 1.8+
    puts `endpoint_id` in every event (its API server, not the stream, creates the
    endpoint): an unknown one is created under that uid, as an event without one is."""
    explicit = event.get("endpoint_id")
    if explicit not in (None, "") and (
        not isinstance(explicit, str) or not UID_PATTERN.match(explicit)
    ):
        raise InvalidEvent(i, "endpoint_id", "must be 1-128 letters, digits, '_', '.', '-'")
    function_uri = event.get("function_uri")
    model = event.get("model")
    if explicit:
        fn = None
        if isinstance(function_uri, str) and function_uri:
            try:
                fn = FunctionUri.parse(function_uri)
            except ValueError:
                fn = None  # the uid is given: the identity is only descriptive
        name, version = explicit, None
        if isinstance(model, str) and model:
            given = event.get("version")
            name, version = split_versioned_model(model, str(given) if given else None)
        project = fn.project if fn is not None else "default"
        uri = function_uri if isinstance(function_uri, str) else ""
        guess = EndpointGuess(explicit, project, name, uri, name, 0, 0)
        guess.model_class = _model_class(event)
        guess.labels = model_labels(event.get("labels")) or {}
        guess.version = version or ""
        return explicit, guess
    if not isinstance(function_uri, str):
        raise InvalidEvent(i, "function_uri", "missing (or give endpoint_id)")
    try:
        fn = FunctionUri.parse(function_uri)
    except ValueError as exc:
        raise InvalidEvent(i, "function_uri", str(exc)) from None
    if not isinstance(model, str) or not model:
        raise InvalidEvent(i, "model", "missing or not a string")
    version = event.get("version")
    name, version = split_versioned_model(model, str(version) if version else None)
    uid = endpoint_uid(fn.project, fn.function, fn.ref, name, version)
    guess = EndpointGuess(uid, fn.project, name, function_uri, name, 0, 0)
    guess.model_class = _model_class(event)
    guess.labels = model_labels(event.get("labels")) or {}  # descriptive, as the class
    guess.version = version or "latest"
    return uid, guess


def _model_class(event: dict[str, Any]) -> str:
    """MLRun names the model's class `class` (router) or `model_class` (flow)."""
    value = event.get("model_class") or event.get("class") or ""
    return value[:256] if isinstance(value, str) else ""


def parse_native_events(
    payload: Any,
    feature_names: Sequence[str],
    n_outputs: int,
    now: float,
    categorical: tuple[int, ...] = (),
    output_names: Sequence[str] = (),
) -> ColumnBatch:
    """The native columnar form of one endpoint; the event index is the row index.
    Outputs given as an object of columns are matched to `output_names` by name."""
    if not isinstance(payload, dict):
        raise InvalidEvent(None, "body", "must be an object with inputs")
    inputs = payload.get("inputs")
    n_features = len(feature_names)
    unknown: list[str] = []
    if isinstance(inputs, dict):
        if not all(isinstance(c, str) for c in inputs):
            raise InvalidEvent(None, "inputs", "column names must be strings")
        unknown = [c for c in inputs if c not in feature_names]  # reported by data-quality
        if len(unknown) > 1000:
            raise InvalidEvent(None, "inputs", f"{len(unknown)} unknown columns (at most 1000)")
        if not any(f in inputs for f in feature_names):
            raise InvalidEvent(None, "inputs", "no column of this endpoint's features")
        lengths = {len(v) if isinstance(v, list) else -1 for v in inputs.values()}
        if -1 in lengths:
            bad = next(c for c, v in inputs.items() if not isinstance(v, list))
            raise InvalidEvent(None, f"inputs.{bad}", "must be a list of values")
        if len(lengths) > 1:
            raise InvalidEvent(None, "inputs", "columns have different lengths")
        n = lengths.pop() if lengths else 0
        columns = []
        category_columns: dict[int, np.ndarray] = {}
        for j, name in enumerate(feature_names):
            if name not in inputs:  # a feature gone missing: all null, reported by data-quality
                columns.append(np.full(n, np.nan))
                if j in categorical:
                    category_columns[j] = _objects([None] * n)
                continue
            if j in categorical:
                for r, value in enumerate(inputs[name]):
                    if value is not None and not isinstance(value, CATEGORY_TYPES):
                        raise InvalidEvent(
                            r, f"inputs.{name}", f"must be a string, number or null, got {value!r}"
                        )
                category_columns[j] = _objects(inputs[name])
                columns.append(np.full(n, np.nan))
                continue
            try:
                column = np.array(inputs[name], dtype=np.float64)
                if column.ndim != 1:
                    raise TypeError
                columns.append(_finite(column, range(n), f"inputs.{name}"))
            except (TypeError, ValueError):
                for r, value in enumerate(inputs[name]):
                    if value is not None and (
                        isinstance(value, bool) or not isinstance(value, int | float)
                    ):
                        raise InvalidEvent(
                            r, f"inputs.{name}", f"must be a number or null, got {value!r}"
                        ) from None
                raise
        features = np.column_stack(columns) if columns else np.empty((n, 0))
    elif isinstance(inputs, list):
        n = len(inputs)
        features, category_columns = _split_rows(
            inputs, n_features, categorical, list(range(n)), "inputs"
        )
    elif isinstance(inputs, np.ndarray):  # rows of floats read straight from msgpack
        n = inputs.shape[0]
        if inputs.shape[1] != n_features:
            raise InvalidEvent(
                0,
                "inputs",
                f"row has {inputs.shape[1]} values, the endpoint has {n_features} features",
            )
        if categorical:  # the same Python floats the lists would have held
            features, category_columns = _split_rows(
                inputs.tolist(), n_features, categorical, list(range(n)), "inputs"
            )
        else:
            features, category_columns = _finite(inputs, range(n), "inputs"), {}
    else:
        raise InvalidEvent(None, "inputs", "missing: a list of rows or an object of columns")
    if n == 0:
        raise InvalidEvent(None, "inputs", "no rows")

    outputs_raw = payload.get("outputs")
    if outputs_raw is None:
        outputs = [np.full(n, np.nan) for _ in range(n_outputs)]
    elif isinstance(outputs_raw, dict):
        if len(outputs_raw) != n_outputs:
            raise InvalidEvent(
                None, "outputs", f"has {len(outputs_raw)} columns, expected {n_outputs}"
            )
        if n_outputs > 1 and output_names:
            strangers = [c for c in outputs_raw if c not in output_names]
            if strangers:
                raise InvalidEvent(
                    None,
                    f"outputs.{strangers[0]}",
                    f"not one of the endpoint's outputs {list(output_names)}",
                )
            outputs_raw = {name: outputs_raw[name] for name in output_names}
        outputs = []
        for name, col in outputs_raw.items():
            if not isinstance(col, list) or len(col) != n:
                raise InvalidEvent(None, f"outputs.{name}", f"must be a list of {n} values")
            outputs.extend(_output_columns(col, 1, f"outputs.{name}"))
    elif isinstance(outputs_raw, np.ndarray):  # numbers read straight from msgpack
        if outputs_raw.shape[0] != n:
            raise InvalidEvent(None, "outputs", f"has {outputs_raw.shape[0]} values for {n} rows")
        if n_outputs != 1:
            raise InvalidEvent(0, "outputs", f"has 1 values, expected {n_outputs}")
        outputs = [_finite_outputs(outputs_raw.astype(np.float64), "outputs", None)]
    elif isinstance(outputs_raw, list):
        if len(outputs_raw) != n:
            raise InvalidEvent(None, "outputs", f"has {len(outputs_raw)} values for {n} rows")
        if n_outputs != 1 or set(map(type, outputs_raw)) & {list, tuple}:
            for r, value in enumerate(outputs_raw):
                if _output_width(value) != n_outputs:
                    raise InvalidEvent(
                        r, "outputs", f"has {_output_width(value)} values, expected {n_outputs}"
                    )
        outputs = _output_columns(outputs_raw, n_outputs)
    else:
        raise InvalidEvent(None, "outputs", "must be a list or an object of columns")

    def time_value(r: int, value: Any) -> float:
        try:
            return event_time(value, now)
        except ValueError as exc:
            raise InvalidEvent(r, "timestamps", str(exc)) from None

    timestamps = _per_row(
        payload,
        "timestamps",
        n,
        now,
        time_value,
        lambda raw: None if None in raw else _event_times(raw, now),  # a null is refused
    )
    latency = _per_row(payload, "latency_us", n, math.nan, _latency_value, _latencies)
    rids_raw = payload.get("request_ids")
    if rids_raw is None:
        request_ids: RequestIds = _generated_ids(n)
    else:
        if not isinstance(rids_raw, list) or len(rids_raw) != n:
            raise InvalidEvent(None, "request_ids", f"must be a list of {n} ids")
        if set(map(type, rids_raw)) != {str}:
            for r, rid in enumerate(rids_raw):
                if not isinstance(rid, str | int) or isinstance(rid, bool):
                    raise InvalidEvent(r, "request_ids", f"must be a string, got {rid!r}")
            rids_raw = [str(r) for r in rids_raw]
        request_ids = _objects(rids_raw)
    errors_raw = payload.get("errors")
    errors = np.empty(n, dtype=object)  # all None: no error
    error_events = 0
    if errors_raw is not None:
        if not isinstance(errors_raw, list) or len(errors_raw) != n:
            raise InvalidEvent(None, "errors", f"must be a list of {n} values (null = no error)")
        errors = _objects([None if e is None else str(e) for e in errors_raw])
        error_events = sum(e is not None for e in errors_raw)
    return ColumnBatch(
        timestamps,
        features,
        outputs,
        request_ids,
        latency,
        errors,
        error_events,
        category_columns,
        {name: n for name in unknown},
    )


def _generated_ids(n: int) -> GeneratedIds:
    """Request ids for rows sent without one: a fresh prefix and the row number, made
    into strings only when read (see GeneratedIds)."""
    return GeneratedIds.new(uuid.uuid4().hex + "-", n)


def _is_latency(value: Any) -> bool:
    """Microseconds: finite, non-negative, under a year."""
    return (
        not isinstance(value, bool)
        and isinstance(value, int | float)
        and 0 <= value < 3.2e13
        and math.isfinite(value)
    )


def _latency_value(r: int, value: Any) -> float:
    if value is None:
        return math.nan
    if not _is_latency(value):
        raise InvalidEvent(r, "latency_us", f"must be a non-negative number, got {value!r}")
    return float(value)


def _latencies(values: list[Any] | np.ndarray) -> np.ndarray | None:
    """Microseconds (null = unknown) in one numpy pass; None if any needs a closer look."""
    if isinstance(values, np.ndarray):  # read straight from msgpack: no nulls
        out = values.astype(np.float64)
        return out if ((out >= 0) & (out < 3.2e13)).all() else None
    if not set(map(type, values)) <= {int, float, type(None)}:
        return None
    out = np.array(values, dtype=np.float64)  # null -> NaN
    unknown = np.isnan(out)
    if int(unknown.sum()) != values.count(None):
        return None  # a NaN was sent: refused by the per-value check
    known = out[~unknown]
    return out if ((known >= 0) & (known < 3.2e13)).all() else None


def _per_row(
    payload: dict[str, Any],
    key: str,
    n: int,
    default: float,
    convert: Callable[[int, Any], float],
    at_once: Callable[[Any], np.ndarray | None],
) -> np.ndarray:
    """A per-row column: `at_once` takes the common case in one pass; anything it declines
    goes value by value through `convert`, which names the bad row."""
    raw = payload.get(key)
    if raw is None:
        return np.full(n, default, dtype=np.float64)
    if not isinstance(raw, list | np.ndarray):
        return np.full(n, convert(0, raw), dtype=np.float64)
    if len(raw) != n:
        raise InvalidEvent(None, key, f"has {len(raw)} values for {n} rows")
    column = at_once(raw)
    if column is not None:
        return column
    values = raw.tolist() if isinstance(raw, np.ndarray) else raw  # the values as sent
    return np.array([convert(r, v) for r, v in enumerate(values)], dtype=np.float64)


def split_by_window(batch: ColumnBatch, base_period: float) -> list[tuple[float, ColumnBatch]]:
    """The batch's rows grouped by window start (aligned to base_period since the epoch)."""
    if len(batch) == 1:  # a single event per request, the most common: no numpy
        return [(math.floor(float(batch.timestamps[0]) / base_period) * base_period, batch)]
    starts = np.floor(batch.timestamps / base_period) * base_period
    unique = np.unique(starts)
    if unique.shape[0] == 1:
        return [(float(unique[0]), batch)]
    parts = []
    for start in unique:
        part = batch.take(starts == start)
        parts.append((float(start), part))
    # error events are counted once, with the first part
    parts[0][1].error_events = batch.error_events
    return parts
