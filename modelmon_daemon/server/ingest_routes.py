"""The ingestion routes: decode, validate (pure functions do the work), log durably,
answer 202. Served by the daemon and by the ingestion server on every other node of a
cluster (server/node_ingest.py); nothing here needs the data dir."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import orjson
from aiohttp import web

from modelmon_daemon.core.errors import (
    ApiError,
    InvalidEvent,
    NotFound,
    Overloaded,
    Unavailable,
    one_line,
)
from modelmon_daemon.core.records import ColumnBatch, EndpointSpec
from modelmon_daemon.ingest.events import (
    ParsedRequest,
    parse_mlrun_events,
    parse_native_events,
    split_by_window,
)
from modelmon_daemon.ingest.labels import label_values, request_id_list
from modelmon_daemon.ingest.mlrun_http import (
    PAYLOAD_KEY,
    carries_http_payloads,
    is_http_payload,
    parse_http_payloads,
)
from modelmon_daemon.ingest.mlrun_json import parse_mlrun_json
from modelmon_daemon.ingest.msgpack_columns import unpack, unpack_native
from modelmon_daemon.server.state import INGEST, MSGPACK_TYPES, IngestServices, json_response
from modelmon_daemon.storage.lmdb_store import StoreFull


def decode(raw: bytes, content_type: str, columns: bool = False) -> Any:
    """JSON (also for no Content-Type, as MLRun's serving posts) or msgpack. `columns`: a
    native batch, whose numeric arrays msgpack may give as numpy arrays directly."""
    if not raw:
        raise ApiError("empty request body", {"field": "body"}, code="invalid_body")
    if content_type in MSGPACK_TYPES:
        try:
            return unpack_native(raw) if columns else unpack(raw)
        except Exception as exc:
            # some decode errors carry no message (msgpack's FormatError): name the kind
            reason = str(exc) or f"malformed bytes ({type(exc).__name__})"
            raise ApiError(
                f"body is not valid msgpack: {reason}", {"field": "body"}, code="invalid_body"
            ) from None
    try:
        return orjson.loads(raw)  # several times faster than json on arrays of numbers
    except orjson.JSONDecodeError as exc:
        raise ApiError(
            f"body is not valid JSON: {exc}", {"field": "body"}, code="invalid_body"
        ) from None


T = TypeVar("T")


async def read_body(request: web.Request) -> Any:
    """The decoded body, unparsed."""
    return await read_payload(request, _as_is)


def _as_is(payload: Any) -> Any:
    return payload


async def read_payload(
    request: web.Request,
    parse: Callable[[Any], T],
    columns: bool = False,
    parse_json: Callable[[bytes], T | None] | None = None,
) -> T:
    """Read, decode and parse the body. A large body is decoded and parsed on a thread of
    its own (the event loop keeps answering), with at most daemon.max_large_requests at
    once: more get 503 with Retry-After before their body is read. `parse_json`: a JSON
    body's bytes parsed directly (a typed decoder), or None to decode and `parse` them."""
    services = _ingest(request)
    daemon = services.settings.daemon
    content_type = request.content_type

    def work(raw: bytes) -> T:
        if parse_json is not None and content_type not in MSGPACK_TYPES:
            parsed = parse_json(raw)
            if parsed is not None:
                return parsed
        return parse(decode(raw, content_type, columns))

    length = request.content_length
    if length is not None and length <= daemon.large_body_size:
        return work(await request.read())
    if services.large_requests >= daemon.max_large_requests:
        raise Overloaded(
            f"{services.large_requests} large requests are being decoded "
            "(daemon.max_large_requests); retry later",
            retry_after=1,
            status=503,
            code="busy",
        )
    services.large_requests += 1
    try:
        raw = await request.read()
        if len(raw) <= daemon.large_body_size:
            return work(raw)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(services.parse_executor, work, raw)
    finally:
        services.large_requests -= 1


def check_capacity(services: IngestServices) -> None:
    """503 while daemon.max_forwarding_rows logged rows are still on their way to the
    stream actors; 429 once daemon.max_pending_rows rows are acknowledged but not yet
    committed to Parquet: memory stays bounded and clients back off instead of piling up."""
    forwarding = services.log.forwarding_rows if services.log is not None else 0
    if forwarding >= services.settings.daemon.max_forwarding_rows:
        raise Overloaded(
            f"{forwarding} logged rows wait to reach their stream actors "
            "(daemon.max_forwarding_rows); retry later",
            retry_after=1,
            status=503,
            code="busy",
        )
    pending = services.pending_rows()
    limit = services.settings.pending_rows_limit
    if pending >= limit:
        raise Overloaded(
            f"{pending} rows wait for their windows to be committed "
            f"(daemon.max_pending_rows = {limit}); retry later",
            retry_after=max(1.0, services.settings.controller.tick_interval),
        )


def _ingest(request: web.Request) -> IngestServices:
    return request.app[INGEST]


async def known_endpoint(services: IngestServices, uid: str) -> EndpointSpec:
    """The endpoint's record, fetched from the log owner first if this process lacks it."""
    if uid not in services.specs:
        await services.fetch_specs([uid])
    return endpoint_spec(services, uid)


# label requests waiting for the labels' owner at once, per server; more get 503
MAX_LABEL_REQUESTS = 64


def endpoint_spec(services: IngestServices, uid: str) -> EndpointSpec:
    """The endpoint's record (cached unpacked), or 404."""
    spec = services.specs.get(uid)
    if spec is None:
        raw = services.stored_spec(uid)
        if raw is None:
            raise NotFound(f"unknown endpoint {uid!r}", {"uid": uid})
        spec = services.specs[uid] = EndpointSpec.from_dict(raw)
    return spec


async def _accept(
    services: IngestServices, batches: dict[str, ColumnBatch], new_specs: list[EndpointSpec]
) -> None:
    if services.log is None:
        raise Unavailable("the daemon is starting or stopping")
    period = services.settings.windows.base_period
    records = [
        (uid, start, part)
        for uid, batch in batches.items()
        for start, part in split_by_window(batch, period)
    ]
    try:
        await services.log.append(records, [s.to_dict() for s in new_specs])
    except asyncio.CancelledError:
        raise
    except StoreFull as exc:  # nothing was written: the client may retry the same request
        raise Overloaded(str(exc), retry_after=30, status=507, code="storage_full") from None
    except Exception as exc:
        raise Unavailable(f"events could not be made durable: {one_line(exc)}") from None
    for spec in new_specs:
        services.specs[spec.uid] = spec


# -- events --------------------------------------------------------------------------------


async def post_mlrun_events(request: web.Request) -> web.Response:
    services = _ingest(request)
    services.counters.count(services.counters.requests, "mlrun_events")
    check_capacity(services)

    def known_spec(uid: str) -> EndpointSpec | None:
        try:
            return endpoint_spec(services, uid)
        except NotFound:
            return None

    def shape(uid: str) -> tuple[int, int, tuple[int, ...]] | None:
        spec = known_spec(uid)
        if spec is None:
            return None
        return len(spec.feature_names), len(spec.label_names), spec.categorical_indices

    def names(uid: str) -> tuple[list[str], list[str]] | None:
        spec = known_spec(uid)
        return None if spec is None else (spec.feature_names, spec.label_names)

    now = time.time()
    decoded: list[Any] = []

    def parse(payload: Any) -> ParsedRequest:
        decoded.append(payload)
        if carries_http_payloads(payload):  # MLRun's monitoring payload
            return parse_http_payloads(payload, shape, names, now)
        return parse_mlrun_events(payload, shape, now)

    parsed = await read_payload(
        request, parse, parse_json=lambda raw: parse_mlrun_json(raw, shape, now)
    )
    if parsed.new_endpoints and await services.fetch_specs(list(parsed.new_endpoints)):
        parsed = parse(decoded[0])  # registered elsewhere meanwhile: known now
    new_specs = []
    for guess in parsed.new_endpoints.values():
        if guess.n_features < 1:
            raise InvalidEvent(None, "request.inputs", "rows must be lists of feature values")
        features = guess.feature_names or [f"f{j}" for j in range(guess.n_features)]
        outputs = guess.label_names or (
            ["output"] if guess.n_outputs == 1 else [f"output_{j}" for j in range(guess.n_outputs)]
        )
        new_specs.append(
            EndpointSpec(
                uid=guess.uid,
                project=guess.project,
                name=guess.name,
                model=guess.model,
                function_uri=guess.function_uri,
                feature_names=features,
                label_names=outputs,
                created=time.time(),
                auto_registered=True,
                model_class=guess.model_class,
                labels=guess.labels,
                version=guess.version,
                categorical_features=[features[j] for j in guess.categorical],
            )
        )
    await _accept(services, parsed.batches, new_specs)
    services.counters.events_accepted += parsed.events
    services.counters.rows_accepted += parsed.rows
    answer: dict[str, Any] = {"accepted": parsed.events, "rows": parsed.rows}
    if is_http_payload(decoded[0] if decoded else None):  # as MLRun's stream answers it
        payload = decoded[0]
        answer.update(
            status="accepted",
            endpoint_id=payload[PAYLOAD_KEY],
            endpoint_name=payload["model_endpoint_name"],
        )
    return json_response(answer, 202)


async def post_native_events(request: web.Request) -> web.Response:
    """A native batch; its optional `labels` (ground truth, one per row, null for none)
    are stored like posted labels, under the rows' request ids, before the events: a
    request that fails after them leaves labels that wait for predictions which never
    come (and expire after performance.label_ttl), never events without their labels,
    and a retry stores the same labels again under the same request ids."""
    services = _ingest(request)
    services.counters.count(services.counters.requests, "native_events")
    uid = request.match_info["uid"]
    spec = await known_endpoint(services, uid)
    check_capacity(services)
    now = time.time()
    labels: list[Any] | None = None

    def parse(payload: Any) -> ColumnBatch:
        nonlocal labels
        batch = parse_native_events(
            payload,
            spec.feature_names,
            len(spec.label_names),
            now,
            spec.categorical_indices,
            spec.label_names,
        )
        if isinstance(payload, dict) and payload.get("labels") is not None:
            labels = label_values(payload["labels"], len(batch))
        return batch

    batch = await read_payload(request, parse, columns=True)
    labeled = 0
    if labels is not None:
        ids = request_id_list(batch.request_ids)
        pairs = [(rid, label) for rid, label in zip(ids, labels, strict=True) if label is not None]
        if pairs:
            await _store_labels(services, uid, [r for r, _ in pairs], [v for _, v in pairs])
            labeled = len(pairs)
    await _accept(services, {uid: batch}, [])
    services.counters.events_accepted += len(batch)
    services.counters.rows_accepted += len(batch)
    if labels is None:
        return json_response({"accepted": len(batch)}, 202)
    return json_response({"accepted": len(batch), "labels": labeled}, 202)


def _check_label_capacity(services: IngestServices) -> None:
    if services.labels_in_flight >= MAX_LABEL_REQUESTS:
        raise Overloaded(
            f"{services.labels_in_flight} label requests wait for their owner; retry later",
            retry_after=1,
            status=503,
            code="busy",
        )


async def _store_labels(
    services: IngestServices, uid: str, ids: list[str], labels: list[Any]
) -> int:
    """Hand labels to their owner (the writer); durable when it answers. Returns how
    many were joined to a committed prediction at once."""
    _check_label_capacity(services)
    if services.owner_state is None:
        raise Unavailable("the daemon is starting or stopping")
    services.labels_in_flight += 1
    try:
        return int(await services.owner_state.log_labels(uid, ids, labels, time.time()))
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise Unavailable(f"labels could not be made durable: {one_line(exc)}") from None
    finally:
        services.labels_in_flight -= 1


async def post_labels(request: web.Request) -> web.Response:
    """Ground truth by request id, to the labels' owner (the writer), which keeps it in
    Parquet as posted and in LMDB for the join with predictions, both durable before the
    202. Served on every node, like the events."""
    services = _ingest(request)
    uid = request.match_info["uid"]
    await known_endpoint(services, uid)
    _check_label_capacity(services)
    payload = await read_body(request)
    if not isinstance(payload, dict):
        raise ApiError("body must be an object with request_ids and labels", {"field": "body"})
    ids = payload.get("request_ids")
    if not isinstance(ids, list) or not ids:
        raise InvalidEvent(None, "request_ids", "must be a non-empty list")
    for i, rid in enumerate(ids):
        if not isinstance(rid, str | int) or isinstance(rid, bool):
            raise InvalidEvent(i, "request_ids", f"must be a string, got {rid!r}")
    labels = label_values(payload.get("labels"), len(ids))
    joined = await _store_labels(services, uid, [str(r) for r in ids], labels)
    return json_response({"accepted": len(ids), "joined": joined}, 202)
