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
from modelmon_daemon.config import Settings
from modelmon_daemon.directory import ActorDirectory
from modelmon_daemon.errors import ApiError
from modelmon_daemon.prometheus import MetricsExporter
from modelmon_daemon.records import EndpointSpec
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.parquet_store import ParquetStore
from modelmon_daemon.wal import GroupCommitLog

log = logging.getLogger(__name__)


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
        return json_response(exc.body(), exc.status)
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


def _count_rejected(request: web.Request, status: int) -> None:
    services = request.app.get(SERVICES)
    if services is not None:
        services.counters.count(services.counters.rejected, str(status))


def build_app(services: Services) -> web.Application:
    from modelmon_daemon import web_alerts
    from modelmon_daemon import web_handlers as h

    app = web.Application(
        client_max_size=services.settings.daemon.max_body_size,
        middlewares=[timing_middleware, error_middleware],
    )
    app[SERVICES] = services

    async def durability_log(app: web.Application) -> AsyncIterator[None]:
        wal = GroupCommitLog(services.store, services.directory.forward, services.executor)
        services.log = wal
        await wal.start()
        yield
        await wal.stop()

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

    app.cleanup_ctx.append(durability_log)
    app.cleanup_ctx.append(controller_watchdog)
    app.cleanup_ctx.append(notification_delivery)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_get("/metrics", h.metrics)
    app.router.add_post("/v1/endpoints", h.register_endpoint)
    app.router.add_get("/v1/endpoints", h.list_endpoints)
    app.router.add_get("/v1/endpoints/{uid}", h.get_endpoint)
    app.router.add_post("/v1/events", h.post_mlrun_events)
    app.router.add_post("/v1/endpoints/{uid}/events", h.post_native_events)
    app.router.add_post("/v1/endpoints/{uid}/labels", h.post_labels)
    app.router.add_get("/v1/endpoints/{uid}/results", h.get_results)
    app.router.add_get("/v1/status", h.status)
    web_alerts.add_routes(app)
    return app
