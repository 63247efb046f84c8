"""The aiohttp application: one cleanup_ctx per long-lived resource, the middlewares and
the routes. Imports point one way: state <- middleware, handlers <- app."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor

from aiohttp import web

from modelmon_daemon.core.errors import one_line
from modelmon_daemon.server import alert_routes, ingest_routes
from modelmon_daemon.server import handlers as h
from modelmon_daemon.server.background import running
from modelmon_daemon.server.delivery import OutboxDelivery
from modelmon_daemon.server.middleware import (
    allowed_hosts,
    api_middleware,
)
from modelmon_daemon.server.state import INGEST, SERVICES, Services
from modelmon_daemon.storage.wal import ThreadedCommitLog

log = logging.getLogger(__name__)

__all__ = ["Services", "allowed_hosts", "build_app"]


def build_app(services: Services) -> web.Application:
    app = web.Application(
        client_max_size=services.settings.daemon.max_body_size,
        middlewares=[api_middleware],
    )
    app[SERVICES] = services
    app[INGEST] = services

    async def durability_log(app: web.Application) -> AsyncIterator[None]:
        # its own thread: nothing slow (a mail server, a webhook, a Parquet read) ever
        # queues in front of a log commit
        wal = ThreadedCommitLog(services.store.wal_append_values, services.directory.forward)
        services.log = wal
        await wal.start()
        yield
        await wal.stop()

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
                    log.warning("controller not reachable: %s", one_line(exc))
                await asyncio.sleep(2.0)

        async with running(watch()):
            yield

    async def notification_delivery(app: web.Application) -> AsyncIterator[None]:
        n = services.settings.notifications
        if services.owner_state is None:  # no outbox owner to deliver from
            yield
            return
        delivery = OutboxDelivery(
            services.owner_state,
            n.max_attempts,
            n.backoff_initial,
            n.backoff_max,
            n.poll_interval,
        )
        services.delivery = delivery
        async with running(delivery.run()):
            yield

    async def node_ingestion(app: web.Application) -> AsyncIterator[None]:
        runtime = services.runtime
        if not services.settings.daemon.node_ingestion or runtime is None:
            yield
            return
        from modelmon_daemon.server.node_ingest import keep_node_servers, stop_node_servers

        async with running(keep_node_servers(services, runtime)):
            yield
        await stop_node_servers(runtime, list(services.node_servers))

    app.cleanup_ctx.append(parse_pool)
    app.cleanup_ctx.append(durability_log)
    app.cleanup_ctx.append(controller_watchdog)
    app.cleanup_ctx.append(notification_delivery)
    app.cleanup_ctx.append(node_ingestion)
    app.router.add_get("/healthz", h.healthz)
    app.router.add_get("/metrics", h.metrics)
    app.router.add_post("/v1/endpoints", h.register_endpoint)
    app.router.add_get("/v1/endpoints", h.list_endpoints)
    app.router.add_get("/v1/endpoints/{uid}", h.get_endpoint)
    app.router.add_delete("/v1/endpoints/{uid}", h.delete_endpoint)
    app.router.add_post("/v1/events", ingest_routes.post_mlrun_events)
    app.router.add_post("/v1/endpoints/{uid}/events", ingest_routes.post_native_events)
    app.router.add_post("/v1/endpoints/{uid}/labels", ingest_routes.post_labels)
    app.router.add_get("/v1/endpoints/{uid}/results", h.get_results)
    app.router.add_get("/v1/endpoints/{uid}/events", h.get_events)
    app.router.add_get("/v1/status", h.status)
    alert_routes.add_routes(app)
    return app
