"""The aiohttp application: typed state, one cleanup_ctx per long-lived resource, and a
middleware that turns every error into {"error": {code, message, details}}."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from modelmon_daemon.alerts.delivery import OutboxDelivery
from modelmon_daemon.auth import bearer_matches
from modelmon_daemon.config import Settings
from modelmon_daemon.directory import ActorDirectory
from modelmon_daemon.errors import ApiError, Forbidden, Unauthorized
from modelmon_daemon.prometheus import MetricsExporter
from modelmon_daemon.records import EndpointSpec
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.parquet_store import ParquetStore
from modelmon_daemon.wal import GroupCommitLog

log = logging.getLogger(__name__)

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


@dataclass
class IngestCounters:
    requests: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    events_accepted: int = 0
    rows_accepted: int = 0

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


@dataclass
class Services:
    settings: Settings
    store: LmdbStore
    parquet: ParquetStore
    directory: ActorDirectory
    executor: ThreadPoolExecutor
    log: GroupCommitLog | None = None
    specs: dict[str, EndpointSpec] = field(default_factory=dict)
    counters: IngestCounters = field(default_factory=IngestCounters)
    delivery: OutboxDelivery | None = None
    exporter: MetricsExporter = field(default_factory=MetricsExporter)
    started: float = 0.0
    token: str = ""
    allowed_hosts: frozenset[str] | None = None
    large_requests: int = 0
    parse_executor: ThreadPoolExecutor | None = None

    def pending_rows(self) -> int:
        """Rows acknowledged (or being acknowledged) whose window is not committed yet."""
        queued = self.log.queued_rows if self.log is not None else 0
        return self.store.wal_rows() + queued


SERVICES = web.AppKey("services", Services)


def json_response(data: Any, status: int = 200) -> web.Response:
    """orjson: fast, numpy-aware, and NaN becomes null (valid JSON)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")


@web.middleware
async def timing_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Request duration per route (the route pattern, so label values stay bounded)."""
    started = time.perf_counter()
    try:
        return await handler(request)
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        services = request.app.get(SERVICES)
        if services is not None:
            services.exporter.request_seconds.labels(route).observe(time.perf_counter() - started)


@web.middleware
async def error_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        _count_rejected(request, exc.status)
        response = json_response(exc.body(), exc.status)
        response.headers.update(exc.headers)
        return response
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        _count_rejected(request, exc.status)
        code = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}.get(
            exc.status, "http_error"
        )
        message = exc.text or exc.reason
        if exc.status == 413:
            limit = request.app[SERVICES].settings.daemon.max_body_size
            message = f"request body is larger than daemon.max_body_size ({limit} bytes)"
        return json_response(
            {"error": {"code": code, "message": message, "details": {"path": request.path}}},
            exc.status,
        )
    except asyncio.CancelledError:
        raise
    except Exception as exc:
        log.exception("handler failed: %s %s", request.method, request.path)
        return json_response(
            {"error": {"code": "internal", "message": repr(exc), "details": {}}}, 500
        )


OPEN_ROUTES = ("/healthz", "/metrics")
BODY_TYPES = ("application/json", *MSGPACK_TYPES)
LOOPBACK_HOSTS = ("localhost", "127.0.0.1", "::1")


def allowed_hosts(settings: Settings) -> frozenset[str] | None:
    """Host header values accepted; None = any (the daemon listens on every address)."""
    if settings.daemon.allowed_hosts:
        return frozenset(h.lower() for h in settings.daemon.allowed_hosts)
    if settings.daemon.host in ("0.0.0.0", "::", ""):
        return None
    return frozenset({*LOOPBACK_HOSTS, settings.daemon.host.lower()})


def _host_name(header: str) -> str:
    header = header.strip().lower()
    if header.startswith("["):  # [::1]:8470
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


@web.middleware
async def security_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Host check (DNS rebinding), bearer token on /v1, and only JSON or msgpack bodies
    (a browser's cross-site "simple" request cannot send either)."""
    services = request.app[SERVICES]
    hosts = services.allowed_hosts
    if hosts is not None and _host_name(request.headers.get("Host", "")) not in hosts:
        raise Forbidden("Host header not allowed (daemon.allowed_hosts)", {"field": "Host"})
    if request.path in OPEN_ROUTES:
        return await handler(request)
    if not bearer_matches(request.headers.get("Authorization"), services.token):
        raise Unauthorized(
            "missing or wrong bearer token: send Authorization: Bearer <token> "
            f"(the token is in {services.settings.token_path.name} of the data dir)"
        )
    if (
        request.method in ("POST", "PUT", "PATCH")
        and "Content-Type" in request.headers
        and request.content_type not in BODY_TYPES
    ):
        raise ApiError(
            f"Content-Type {request.content_type!r} is not accepted: send "
            "application/json or application/msgpack",
            {"field": "Content-Type"},
            status=415,
            code="unsupported_media_type",
        )
    return await handler(request)


def _count_rejected(request: web.Request, status: int) -> None:
    services = request.app.get(SERVICES)
    if services is not None:
        services.counters.count(services.counters.rejected, str(status))


def build_app(services: Services) -> web.Application:
    from modelmon_daemon import web_alerts
    from modelmon_daemon import web_handlers as h

    app = web.Application(
        client_max_size=services.settings.daemon.max_body_size,
        middlewares=[timing_middleware, error_middleware, security_middleware],
    )
    app[SERVICES] = services

    async def durability_log(app: web.Application) -> AsyncIterator[None]:
        # its own thread: nothing slow (a mail server, a webhook, a Parquet read) ever
        # queues in front of a log commit
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="modelmon-log")
        wal = GroupCommitLog(services.store, services.directory.forward, executor)
        services.log = wal
        await wal.start()
        yield
        await wal.stop()
        executor.shutdown(wait=True)

    async def parse_pool(app: web.Application) -> AsyncIterator[None]:
        services.parse_executor = ThreadPoolExecutor(
            max_workers=services.settings.daemon.max_large_requests,
            thread_name_prefix="modelmon-parse",
        )
        yield
        services.parse_executor.shutdown(wait=True)

    async def controller_watchdog(app: web.Application) -> AsyncIterator[None]:
        async def watch() -> None:
            while True:
                try:
                    await services.directory.controller.ensure_running.remote()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("controller not reachable: %r", exc)
                await asyncio.sleep(2.0)

        task = asyncio.get_running_loop().create_task(watch())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    async def notification_delivery(app: web.Application) -> AsyncIterator[None]:
        n = services.settings.notifications
        delivery = OutboxDelivery(
            services.store,
            services.executor,
            n.max_attempts,
            n.backoff_initial,
            n.backoff_max,
            n.poll_interval,
        )
        services.delivery = delivery
        task = asyncio.get_running_loop().create_task(delivery.run())
        yield
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            pass

    app.cleanup_ctx.append(parse_pool)
    app.cleanup_ctx.append(durability_log)
    app.cleanup_ctx.append(controller_watchdog)
    app.cleanup_ctx.append(notification_delivery)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_get("/metrics", h.metrics)
    app.router.add_post("/v1/endpoints", h.register_endpoint)
    app.router.add_get("/v1/endpoints", h.list_endpoints)
    app.router.add_get("/v1/endpoints/{uid}", h.get_endpoint)
    app.router.add_delete("/v1/endpoints/{uid}", h.delete_endpoint)
    app.router.add_post("/v1/events", h.post_mlrun_events)
    app.router.add_post("/v1/endpoints/{uid}/events", h.post_native_events)
    app.router.add_post("/v1/endpoints/{uid}/labels", h.post_labels)
    app.router.add_get("/v1/endpoints/{uid}/results", h.get_results)
    app.router.add_get("/v1/endpoints/{uid}/events", h.get_events)
    app.router.add_get("/v1/status", h.status)
    web_alerts.add_routes(app)
    return app
