"""HTTP handlers of the daemon's own API (the ingestion routes are in ingest_routes.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

from aiohttp import web

from modelmon_daemon.config import describe
from modelmon_daemon.core.errors import ApiError, Unavailable, one_line
from modelmon_daemon.core.records import EndpointSpec
from modelmon_daemon.core.times import iso, query_time
from modelmon_daemon.core.uris import redacted_uri
from modelmon_daemon.ingest.registration import build_spec
from modelmon_daemon.server.ingest_routes import endpoint_spec, read_body
from modelmon_daemon.server.state import SERVICES, Services, json_response

T = TypeVar("T")


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def _spec(services: Services, uid: str) -> EndpointSpec:
    return endpoint_spec(services, uid)


# -- endpoints -------------------------------------------------------------------------------


async def register_endpoint(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request)
    loop = asyncio.get_running_loop()
    spec = await loop.run_in_executor(
        services.executor,
        build_spec,
        body,
        time.time(),
        services.settings.reference_paths,
        services.settings.performance.max_calibration_error,
        services.store.get_endpoint,
        services.settings.reference_uris,
    )
    existing = services.store.get_endpoint(spec.uid)
    status = 201
    if existing is not None:
        old = EndpointSpec.from_dict(existing)
        if old.feature_names != spec.feature_names or old.label_names != spec.label_names:
            raise ApiError(
                f"endpoint {spec.uid} exists with other feature_names/label_names",
                {"uid": spec.uid, "field": "feature_names"},
                status=409,
                code="conflict",
            )
        spec.created = old.created
        status = 200
    if services.log is not None:  # shares a durable commit with concurrent requests
        await services.log.append([], [], registered=[spec.to_dict()])
    else:
        await loop.run_in_executor(services.executor, services.store.put_endpoint, spec.to_dict())
    services.specs[spec.uid] = spec
    # its stream actor is made and its record handed to its application actor in the
    # background (the first event waits for the route, and a record the application
    # actor lacks goes with the endpoint's window)
    services.directory.route_soon(spec.uid, changed=status == 200)
    if status == 201:
        record = (await _records(services, [spec.uid], with_live=False))[0]
    else:
        record = (await _records(services, [spec.uid]))[0]
    return json_response(record, status)


async def _records(
    services: Services, uids: list[str], with_live: bool = True
) -> list[dict[str, Any]]:
    """Endpoint records; `with_live`: with the stream actors' live figures (one round
    trip)."""
    ops = await services.directory.operational(uids) if with_live else {}
    out = []
    for uid in uids:
        spec = _spec(services, uid).to_dict()
        state = services.store.get_state(uid)
        last = services.store.get_last_analyzed(uid)
        live = ops.get(uid, {})
        record = {
            **spec,
            "model_type": spec.get("model_type") or state.get("inferred_model_type") or "",
            "model_type_source": "registered"
            if spec.get("model_type")
            else ("inferred" if state.get("inferred_model_type") else None),
            "created": iso(spec["created"]),
            "current_stats": state["current_stats"],
            "drift_measures": state["drift_measures"],
            "drift_status": state["drift_status"],
            "latency_avg_5m": live.get("latency_avg_5m"),
            "latency_avg_1h": live.get("latency_avg_1h"),
            "predictions_count_5m": live.get("predictions_count_5m", 0),
            "predictions_count_1h": live.get("predictions_count_1h", 0),
            "predictions_per_second": live.get("predictions_per_second", 0.0),
            "error_count": live.get("error_count", state["error_count"]),
            "first_request": iso(live.get("first_request", state["first_request"])),
            "last_request": iso(live.get("last_request", state["last_request"])),
            "late_events": live.get("late_events", state["late_events"]),
            "events_total": live.get("events_total", state["events"]),
            "buffered_events": live.get("buffered_events", 0),
            # of those, in the stream actor's memory (the rest is read back from the log)
            "held_events": live.get("held_events", 0),
            # since the stream actor started (Prometheus counters; PromQL windows them)
            "predictions_total": live.get("predictions_total", 0.0),
            "latency_seconds": live.get("latency_seconds"),
            "last_analyzed": {app: iso(t) for app, t in last.items()},
            "closed_through": iso(state["closed_through"]),
            "performance": {
                "estimated": _timed(state.get("performance_estimated")),
                "realized": _timed(state.get("performance_realized")),
            },
            "app_failures": [
                {**f, "start": iso(f["start"]), "end": iso(f["end"]), "time": iso(f["time"])}
                for f in services.store.app_failures(uid)[-20:]
            ],
            "stream_actor": services.directory.routes.get(uid),
            "live": bool(live),
        }
        out.append(record)
    return out


def _timed(entry: Any) -> dict[str, Any] | None:
    """A stored {start, end, ...} with ISO times (None if absent or not a dict)."""
    if not isinstance(entry, dict):
        return None
    return {**entry, "start": iso(entry.get("start")), "end": iso(entry.get("end"))}


def _count_param(request: web.Request, key: str, default: int, most: int) -> int:
    raw = request.query.get(key)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or int(raw) > most:
        raise ApiError(f"{key} must be a whole number 0..{most}", {"field": key})
    return int(raw)


async def list_endpoints(request: web.Request) -> web.Response:
    """Filters (`project`, `name`, `model`, exact; `label=key=value` or `label=key`, as
    many as wanted, all must hold) and pages (`limit`, `offset`), as MLRun's
    list_model_endpoints; `total` counts the matches before paging."""
    services = _services(request)
    wanted = {k: request.query[k] for k in ("project", "name", "model") if k in request.query}
    labels = [item.partition("=") for item in request.query.getall("label", [])]
    limit = _count_param(request, "limit", 1000, 10_000)
    offset = _count_param(request, "offset", 0, 10**9)

    def labelled(record: dict[str, Any]) -> bool:
        have = record.get("labels")
        if not isinstance(have, dict):  # a record stored before labels were kept
            have = {}
        return all((have.get(key) == value) if sep else (key in have) for key, sep, value in labels)

    matches = [
        e["uid"]
        for e in services.store.list_endpoints()
        if all(e.get(k) == v for k, v in wanted.items()) and labelled(e)
    ]
    page = matches[offset : offset + limit]
    return json_response({"endpoints": await _records(services, page), "total": len(matches)})


async def delete_endpoint(request: web.Request) -> web.Response:
    """Stop analyzing an endpoint and forget it (as MLRun's delete_model_endpoint). Its
    Parquet data stays unless `?purge=true`; events still waiting for their window are
    dropped with it (`dropped_rows`)."""
    services = _services(request)
    uid = request.match_info["uid"]
    _spec(services, uid)
    purge = request.query.get("purge", "false").lower()
    if purge not in ("true", "false"):
        raise ApiError("purge must be true or false", {"field": "purge"})
    try:
        await asyncio.wait_for(services.directory.controller.forget.remote(uid), 60)
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        raise Unavailable(f"the controller could not stop the endpoint: {one_line(exc)}") from None
    loop = asyncio.get_running_loop()
    dropped = await loop.run_in_executor(services.executor, services.store.delete_endpoint, uid)
    services.specs.pop(uid, None)
    services.directory.routes.pop(uid, None)
    files = 0
    if purge == "true":
        if services.owner_state is not None:  # the writer: the owner of those files
            try:
                files = await services.owner_state.purge(uid)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the endpoint is deleted; its files are kept for now
                raise Unavailable(
                    f"endpoint {uid} deleted, its files not purged: {one_line(exc)}; "
                    "its stored rows stay until a purge succeeds",
                    code="storage_unavailable",
                ) from None
        else:
            files = await _read_store(services, services.parquet.purge, uid)
    return json_response(
        {"deleted": uid, "purged": purge == "true", "dropped_rows": dropped, "files": files}
    )


async def get_endpoint(request: web.Request) -> web.Response:
    services = _services(request)
    uid = request.match_info["uid"]
    _spec(services, uid)
    return json_response((await _records(services, [uid]))[0])


def _time_param(request: web.Request, key: str) -> float | None:
    value = request.query.get(key)
    if value is None or value == "":
        return None
    try:
        return query_time(float(value) if _is_number(value) else value)
    except ValueError as exc:
        raise ApiError(f"query parameter {key}: {exc}", {"field": key}) from None


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


ARROW_STREAM = "application/vnd.apache.arrow.stream"
MAX_EVENT_ROWS = 1_000_000


async def get_events(request: web.Request) -> web.Response:
    """The stored events of an endpoint (as `get_offline_features` gives MLRun users):
    JSON columns, or an Arrow IPC stream with `Accept: application/vnd.apache.arrow.stream`.
    At most `limit` rows (default 100,000, at most 1,000,000): `truncated` says more exist."""
    services = _services(request)
    uid = request.match_info["uid"]
    _spec(services, uid)
    start, end = _time_param(request, "start"), _time_param(request, "end")
    raw_limit = request.query.get("limit", "100000")
    if not raw_limit.isdigit() or not 0 < int(raw_limit) <= MAX_EVENT_ROWS:
        raise ApiError(f"limit must be 1..{MAX_EVENT_ROWS}", {"field": "limit"})
    limit = int(raw_limit)
    table, truncated = await _read_store(
        services, services.parquet.read_events, uid, start, end, limit
    )
    if ARROW_STREAM in request.headers.get("Accept", ""):
        import pyarrow as pa

        sink = pa.BufferOutputStream()
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        return web.Response(
            body=sink.getvalue().to_pybytes(),
            content_type=ARROW_STREAM,
            headers={"X-Modelmon-Truncated": "true" if truncated else "false"},
        )
    return json_response(
        {"events": table.to_pydict(), "rows": table.num_rows, "truncated": truncated}
    )


async def get_results(request: web.Request) -> web.Response:
    services = _services(request)
    uid = request.match_info["uid"]
    _spec(services, uid)
    start, end = _time_param(request, "start"), _time_param(request, "end")
    application, name = request.query.get("application"), request.query.get("name")
    rows = await _read_store(
        services, services.parquet.read_results, uid, start, end, application, name
    )
    return json_response({"results": rows})


async def _read_store(services: Services, read: Callable[..., T], *args: Any) -> T:
    """A read of the Parquet tree, off the event loop. A store that cannot be read (an
    object store gone away, a failing disk) is a 503 with Retry-After that says why, not
    a 500: the data is there once the store is back."""
    try:
        return await asyncio.get_running_loop().run_in_executor(services.executor, read, *args)
    except OSError as exc:
        raise Unavailable(
            f"the Parquet store cannot be read: {one_line(exc)}", code="storage_unavailable"
        ) from None


# -- operations ------------------------------------------------------------------------------


async def healthz(request: web.Request) -> web.Response:
    services = _services(request)
    actors = await services.directory.health()
    storage = services.store.usage()
    ok = all(actors.values()) and services.log is not None and not storage["full"]
    return json_response(
        {
            "status": "ok" if ok else "unavailable",
            "actors": actors,
            "storage": storage,
            "pending_rows": services.pending_rows(),
            "pending_rows_limit": services.settings.pending_rows_limit,
        },
        200 if ok else 503,
    )


async def status(request: web.Request) -> web.Response:
    services = _services(request)
    try:
        controller = await asyncio.wait_for(services.directory.controller.status.remote(), 5)
    except Exception as exc:
        controller = {"error": one_line(exc)}
    return json_response(
        {
            "uptime_s": time.time() - services.started,
            "data_dir": str(services.settings.data_path),
            "parquet": redacted_uri(services.settings.parquet_root),
            "base_period_s": services.settings.windows.base_period,
            "allowed_lateness_s": services.settings.windows.allowed_lateness,
            "drift_thresholds": {
                "potential": services.settings.drift.potential_threshold,
                "detected": services.settings.drift.detected_threshold,
            },
            "endpoints": len(services.store.list_endpoints()),
            "wal_records": services.store.wal_size(),
            "settings": describe(services.settings),
            "controller": controller,
            "ingest": services.counters.__dict__,
            "log": services.log_stats(),
            "ingestion_servers": [
                {"node": node, "url": url} for node, url in sorted(services.node_servers.items())
            ],
            "ingestion_server_errors": [
                {"node": node, "error": error}
                for node, error in sorted(services.node_server_errors.items())
            ],
        }
    )


async def metrics(request: web.Request) -> web.Response:
    from modelmon_daemon.server.alert_routes import alert_record
    from modelmon_daemon.server.prometheus import CONTENT_TYPE, Snapshot

    services = _services(request)
    c = services.counters
    uids = [e["uid"] for e in services.store.list_endpoints()]
    endpoints = await _records(services, uids)
    for record in endpoints:
        record["latest_results"] = services.store.latest_results(record["uid"])
    try:
        controller = await asyncio.wait_for(services.directory.controller.status.remote(), 5)
    except Exception:
        controller = {}
    delivery = services.delivery
    snapshot = Snapshot(
        requests=dict(c.requests),
        rejected=dict(c.rejected),
        events=c.events_accepted,
        rows=c.rows_accepted,
        wal_records=services.store.wal_size(),
        pending_rows=services.pending_rows(),
        pending_rows_limit=services.settings.pending_rows_limit,
        storage=services.store.usage(),
        ticks=int(controller.get("ticks", 0)),
        tick_errors=int(controller.get("tick_errors", 0)),
        notifications_delivered=delivery.delivered if delivery else 0,
        notification_failures=delivery.failed_attempts if delivery else 0,
        log=services.log_stats(),
        endpoints=endpoints,
        alerts=[alert_record(services, a) for a in services.store.list_alerts()],
        per_feature=services.settings.metrics.per_feature,
    )
    body = services.exporter.render(snapshot)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
