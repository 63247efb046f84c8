"""The aiohttp application: one cleanup_ctx per long-lived resource, the middlewares and
the routes. Imports point one way: state <- middleware, handlers <- app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from modelmon_daemon.server import alert_routes
from modelmon_daemon.server import handlers as h
from modelmon_daemon.server.delivery import OutboxDelivery
from modelmon_daemon.server.middleware import (
    allowed_hosts,
    error_middleware,
    security_middleware,
    timing_middleware,
)
from modelmon_daemon.server.state import SERVICES, Services
from modelmon_daemon.storage.wal import GroupCommitLog

log = logging.getLogger(__name__)

__all__ = ["Services", "allowed_hosts", "build_app"]


def build_app(services: Services) -> web.Application:
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
    alert_routes.add_routes(app)
    return app
