"""Ingestion on every node of a cluster. Each node other than the daemon's runs an
ingestion server (a NodeIngestionActor holding the app built here): the daemon's event
routes and token, parsing and validating on its node, appending to the log owner (the
writer, next to the data dir) before it answers 202, then forwarding to the stream actors
itself. The daemon keeps one server on every alive node (`keep_node_servers`)."""

from __future__ import annotations

import asyncio
import errno
import logging
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from modelmon_daemon.actors import remote
from modelmon_daemon.config import Settings
from modelmon_daemon.core.errors import one_line
from modelmon_daemon.core.records import EndpointSpec, unpack
from modelmon_daemon.server import ingest_routes
from modelmon_daemon.server.background import running
from modelmon_daemon.server.directory import ActorDirectory
from modelmon_daemon.server.middleware import (
    allowed_hosts,
    api_middleware,
)
from modelmon_daemon.server.state import INGEST, IngestServices, Services, json_response
from modelmon_daemon.storage.wal import GroupCommitLog, WireRecord

log = logging.getLogger(__name__)

REFRESH_INTERVAL = 0.1  # seconds between reads of the log owner's backlog
SPEC_REFRESH_INTERVAL = 2.0  # seconds between re-reads of the cached endpoint records
RECONCILE_INTERVAL = 5.0  # seconds between the daemon's checks of the node servers


@dataclass(kw_only=True)
class NodeIngestServices(IngestServices):
    """Endpoint records and the log's backlog come from the log owner over Ray."""

    writer: Any
    node_logged_rows: int = 0

    async def fetch_specs(self, uids: list[str]) -> int:
        raws = await remote.endpoints_raw(self.writer, uids)
        found = 0
        for uid, raw in zip(uids, raws, strict=True):
            if raw is not None:
                self.specs[uid] = EndpointSpec.from_dict(unpack(raw))
                found += 1
        return found

    def logged_rows(self) -> int:
        return self.node_logged_rows

    async def refresh_specs(self) -> None:
        """Cached records follow the log owner: deleted endpoints go, updates come."""
        uids = list(self.specs)
        if not uids:
            return
        raws = await remote.endpoints_raw(self.writer, uids)
        for uid, raw in zip(uids, raws, strict=True):
            if raw is None:
                self.specs.pop(uid, None)
            else:
                self.specs[uid] = EndpointSpec.from_dict(unpack(raw))


async def node_healthz(request: web.Request) -> web.Response:
    services = request.app[INGEST]
    ok = services.log is not None
    return json_response(
        {
            "status": "ok" if ok else "unavailable",
            "role": "node ingestion server",
            "pending_rows": services.pending_rows(),
            "pending_rows_limit": services.settings.pending_rows_limit,
            "ingest": services.counters.__dict__,
            "log": services.log_stats(),
        },
        200 if ok else 503,
    )


def build_node_app(settings: Settings, token: str) -> web.Application:
    """The ingestion app of a node: /healthz, the two event routes and labels."""
    writer = remote.get_actor(remote.WRITER)
    directory = ActorDirectory(remote.get_actor(remote.CONTROLLER), writer, [], remote.get_actor)
    services = NodeIngestServices(
        settings=settings,
        writer=writer,
        token=token,
        allowed_hosts=allowed_hosts(settings),
        owner_state=remote.LogOwnerState(writer),
    )
    app = web.Application(
        client_max_size=settings.daemon.max_body_size,
        middlewares=[api_middleware],
    )
    app[INGEST] = services

    async def append(
        records: list[WireRecord], specs: list[dict[str, Any]], registered: list[dict[str, Any]]
    ) -> tuple[list[int], list[bytes] | None]:
        # the log is on another node: the stream actors get the batches themselves
        return await remote.log_append(writer, records, specs, registered), None

    async def durability_log(app: web.Application) -> AsyncIterator[None]:
        services.log = GroupCommitLog(append, directory.forward)
        await services.log.start()
        yield
        await services.log.stop()

    async def parse_pool(app: web.Application) -> AsyncIterator[None]:
        services.parse_executor = ThreadPoolExecutor(
            max_workers=settings.daemon.max_large_requests, thread_name_prefix="modelmon-parse"
        )
        yield
        services.parse_executor.shutdown(wait=True)

    async def follow_log_owner(app: web.Application) -> AsyncIterator[None]:
        async def follow() -> None:
            last_specs = 0.0
            loop = asyncio.get_running_loop()
            while True:
                try:
                    services.node_logged_rows = await remote.logged_rows(writer)
                    if loop.time() - last_specs > SPEC_REFRESH_INTERVAL:
                        last_specs = loop.time()
                        await services.refresh_specs()
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("log owner not reachable: %s", one_line(exc))
                await asyncio.sleep(REFRESH_INTERVAL)

        async with running(follow()):
            yield

    app.cleanup_ctx.append(parse_pool)
    app.cleanup_ctx.append(durability_log)
    app.cleanup_ctx.append(follow_log_owner)
    app.router.add_get("/healthz", node_healthz)
    app.router.add_post("/v1/events", ingest_routes.post_mlrun_events)
    app.router.add_post("/v1/endpoints/{uid}/events", ingest_routes.post_native_events)
    app.router.add_post("/v1/endpoints/{uid}/labels", ingest_routes.post_labels)
    return app


async def reconcile_node_servers(services: Services, runtime: Any) -> dict[str, str]:
    """An ingestion server on every alive node but the daemon's; their URLs by node. Why
    a server did not start is kept in `services.node_server_errors` (shown by
    /v1/status) and logged once per node and reason, not at every check."""
    settings = services.settings
    port = settings.daemon.port if settings.daemon.node_port == -1 else settings.daemon.node_port
    host = settings.daemon.host
    urls: dict[str, str] = {}
    errors: dict[str, str] = {}
    for node, address in remote.node_addresses().items():
        if node == runtime.node_id:
            continue
        shown = address if host in ("0.0.0.0", "::", "") else host
        handle = runtime.node_ingestion(node, services.token, build_node_app)
        try:
            urls[node] = await asyncio.wait_for(handle.start.remote(host, port, shown), 60)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            errors[node] = start_failure(exc, host, port)
            if services.node_server_errors.get(node) != errors[node]:
                log.warning("ingestion server on node %s did not start: %s", node, errors[node])
    services.node_server_errors = errors
    return urls


def start_failure(exc: BaseException, host: str, port: int) -> str:
    """Why a node's server did not start, in one line: the actor's own exception (Ray
    wraps it, and the wrapper's repr drops its message), with a hint for a port taken."""
    cause = getattr(exc, "cause", None) or exc
    if isinstance(cause, TimeoutError | asyncio.TimeoutError):
        return "no answer within 60 s"
    reason = " ".join(str(cause).split()) or type(cause).__name__
    if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
        reason += (
            f" ({host}:{port} is taken on that node: nodes that share a machine need "
            "daemon.node_port = 0, or a port of their own)"
        )
    return reason


async def keep_node_servers(services: Services, runtime: Any) -> None:
    """Runs for the daemon's life: servers for nodes that join, forget nodes that die."""
    while True:
        try:
            services.node_servers = await reconcile_node_servers(services, runtime)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("node ingestion servers: %s", one_line(exc))
        await asyncio.sleep(RECONCILE_INTERVAL)


async def stop_node_servers(runtime: Any, nodes: list[str]) -> None:
    """Let each server flush the requests it is logging before the daemon goes."""

    async def stop(node: str) -> None:
        try:
            handle = remote.get_actor(remote.ingestion_name(node))
            await asyncio.wait_for(handle.stop.remote(), 30)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.debug("stopping the ingestion server of %s: %r", node[:12], exc)

    await asyncio.gather(*(stop(n) for n in nodes))
