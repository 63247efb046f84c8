"""MLRun's HTTP monitoring payload (MLRun 1.12): what a model served outside MLRun posts
to the monitoring stream's URL (`project.get_model_monitoring_url()`) for an endpoint
made by `project.create_user_model_endpoint(...)`:

    {"model_endpoint_uid", "model_endpoint_name", "inputs", "outputs",
     "timestamp"?, "latency"? (microseconds), "request_id"?, "model_class"?, "labels"?}

Posted to `/v1/events` (alone or in a list, among serving events too), each payload is
made into the serving event MLRun's stream makes of it (`ProcessHTTPEvent`, with
`_to_listed_data`): `inputs`/`outputs` as a list of rows, one flat row, a scalar, a
dict of column -> value(s), or a list of same-keyed dicts, columns ordered by the
endpoint's feature / label names when it has them, else by the keys' order (which then
name a new endpoint's columns). That event is then parsed as any MLRun event, and an
error names the payload's own field.

Where MLRun's reading is a slip, this one differs, on purpose: a dict with a single
column of several values is that many rows (MLRun makes one row of them); a missing
`latency` is no latency (MLRun records 0 µs); `latency` is microseconds whatever its
type (a float `microsec` means seconds in MLRun's flow events)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.ingest.events import ParsedRequest, ShapeLookup, parse_mlrun_events

PAYLOAD_KEY = "model_endpoint_uid"
REQUIRED = ("model_endpoint_uid", "model_endpoint_name", "inputs", "outputs")
# the translated event's fields -> the payload's, for errors the event parser raises
PAYLOAD_FIELDS = {
    "request.inputs": "inputs",
    "resp.outputs": "outputs",
    "when": "timestamp",
    "microsec": "latency",
    "endpoint_id": "model_endpoint_uid",
    "model": "model_endpoint_name",
}
_NAME_TRANSLATION = str.maketrans({" ": "_", "(": "", ")": ""})  # MLRun's norm_column_name

# an endpoint's (feature names, label names) when it is known, else None
NamesLookup = Callable[[str], tuple[list[str], list[str]] | None]


def is_http_payload(event: Any) -> bool:
    return isinstance(event, dict) and PAYLOAD_KEY in event


def carries_http_payloads(payload: Any) -> bool:
    if isinstance(payload, list):
        return any(map(is_http_payload, payload))
    return is_http_payload(payload)


def serving_events(payload: Any, known_names: NamesLookup) -> Any:
    """The body with each HTTP payload made into MLRun's serving event (others as
    they are)."""
    if isinstance(payload, list):
        return [
            serving_event(i, e, known_names) if is_http_payload(e) else e
            for i, e in enumerate(payload)
        ]
    return serving_event(0, payload, known_names)


def payload_field(field: str) -> str:
    """A field of the translated event as the payload names it (`request.inputs[2]` ->
    `inputs[2]`)."""
    for ours, theirs in PAYLOAD_FIELDS.items():
        if field == ours or field.startswith((ours + "[", ours + ".")):
            return theirs + field[len(ours) :]
    return field


def serving_event(index: int | None, payload: dict[str, Any], known_names: NamesLookup) -> dict:
    missing = [key for key in REQUIRED if payload.get(key) in (None, "")]
    if missing:
        raise InvalidEvent(
            index,
            missing[0],
            "missing (MLRun's monitoring payload needs " + ", ".join(REQUIRED) + ")",
        )
    uid, name = payload[PAYLOAD_KEY], payload["model_endpoint_name"]
    if not isinstance(uid, str):
        raise InvalidEvent(index, PAYLOAD_KEY, f"must be a string, got {type(uid).__name__}")
    if not isinstance(name, str):
        raise InvalidEvent(
            index, "model_endpoint_name", f"must be a string, got {type(name).__name__}"
        )
    features, labels = known_names(uid) or (None, None)
    inputs, input_schema = listed(index, "inputs", payload["inputs"], features, rows=True)
    outputs, output_schema = listed(index, "outputs", payload["outputs"], labels, rows=False)
    latency = payload.get("latency")
    if type(latency) is float and latency == latency and abs(latency) < 1e18:
        latency = round(latency)  # microseconds: a float must not read as seconds
    request_id = payload.get("request_id")
    event: dict[str, Any] = {
        "endpoint_id": uid,
        "model": name,
        "model_class": payload.get("model_class") or "",
        "when": payload.get("timestamp"),
        "microsec": latency,
        "request": {
            "id": uuid.uuid4().hex if request_id is None else request_id,
            "inputs": inputs,
            "input_schema": input_schema or features,
        },
        "resp": {"outputs": outputs, "output_schema": output_schema or labels},
    }
    for key in ("labels", "function_uri"):
        if key in payload:
            event[key] = payload[key]
    return event


def listed(
    index: int | None, field: str, raw: Any, schema: list[str] | None, rows: bool
) -> tuple[list[Any], list[str] | None]:
    """MLRun's `_to_listed_data`: a dict (or a list of same-keyed dicts) transposed by
    key, a list as it is, a scalar as [scalar]; the column names a dict gave (None for
    the other forms). `rows`: inputs, where one column of several values is that many
    rows (a flat list would be one row)."""
    if isinstance(raw, dict):
        return _transposed(index, field, raw, schema, rows)
    if not isinstance(raw, list):
        return [raw], None
    if raw and all(isinstance(item, dict) for item in raw):
        if len({tuple(sorted(map(str, item))) for item in raw}) == 1:
            merged: dict[Any, list[Any]] = {}
            for item in raw:
                for key, value in item.items():
                    merged.setdefault(key, []).append(value)
            return _transposed(index, field, merged, schema, rows)
        raise InvalidEvent(index, field, "a list of objects must have the same keys in each")
    return raw, None


def _transposed(
    index: int | None, field: str, data: dict[Any, Any], schema: list[str] | None, rows: bool
) -> tuple[list[Any], list[str] | None]:
    if not all(isinstance(key, str) for key in data):
        raise InvalidEvent(index, field, "keys must be strings (column names)")
    columns = {key.translate(_NAME_TRANSLATION): value for key, value in data.items()}
    names = list(columns) if not schema else [n.translate(_NAME_TRANSLATION) for n in schema]
    absent = [n for n in names if n not in columns]
    if absent:
        raise InvalidEvent(
            index,
            f"{field}.{absent[0]}",
            f"missing: the endpoint's columns are {', '.join(names)}",
        )
    if not names:
        raise InvalidEvent(index, field, "has no columns")
    values = [columns[n] for n in names]
    as_lists = [isinstance(v, list | tuple) for v in values]
    if not any(as_lists):
        table = [values]  # one row
    elif not all(as_lists):
        raise InvalidEvent(index, field, "values must be all scalars or all lists")
    elif len({len(v) for v in values}) != 1:
        raise InvalidEvent(index, field, "lists must have one length (one value a row)")
    else:
        table = [list(row) for row in zip(*values, strict=True)]
    new_names = None if schema else names
    if len(names) == 1 and not rows:
        return [row[0] for row in table], new_names  # one output column: a value a row
    return table, new_names


def parse_http_payloads(
    payload: Any, known_shape: ShapeLookup, known_names: NamesLookup, now: float
) -> ParsedRequest:
    """A body with MLRun monitoring payloads (and maybe serving events) parsed as the
    serving events they become; an error in a payload names the payload's field."""
    events = serving_events(payload, known_names)
    try:
        return parse_mlrun_events(events, known_shape, now)
    except InvalidEvent as exc:
        index, field = exc.details.get("index"), exc.details.get("field")
        source = payload[index] if isinstance(payload, list) and isinstance(index, int) else payload
        if is_http_payload(source) and isinstance(field, str):
            raise InvalidEvent(index, payload_field(field), exc.reason) from None
        raise
