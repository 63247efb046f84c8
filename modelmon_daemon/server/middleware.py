"""The middleware in front of every route: the security checks (Host, bearer token, body
type), errors as {"error": {code, message, details}}, and request timing."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from aiohttp import web

from modelmon_daemon.config import Settings
from modelmon_daemon.core.auth import bearer_matches
from modelmon_daemon.core.errors import ApiError, Forbidden, Unauthorized
from modelmon_daemon.server.state import INGEST, MSGPACK_TYPES, json_response

log = logging.getLogger(__name__)


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
async def api_middleware(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Every request: the security checks, errors as {"error": {code, message, details}},
    and its duration per route (the route pattern, so label values stay bounded). One
    middleware, not three: each layer costs a coroutine on every request."""
    started = time.perf_counter()
    try:
        check_request(request)
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
            limit = request.app[INGEST].settings.daemon.max_body_size
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
    finally:
        resource = request.match_info.route.resource
        route = resource.canonical if resource is not None else "unmatched"
        services = request.app.get(INGEST)
        if services is not None:
            services.exporter.request_seconds.observe(route, time.perf_counter() - started)


def check_request(request: web.Request) -> None:
    """Host check (DNS rebinding), bearer token on /v1, and only JSON or msgpack bodies
    (a browser's cross-site "simple" request cannot send either)."""
    services = request.app[INGEST]
    hosts = services.allowed_hosts
    if hosts is not None and _host_name(request.headers.get("Host", "")) not in hosts:
        raise Forbidden("Host header not allowed (daemon.allowed_hosts)", {"field": "Host"})
    if request.path in OPEN_ROUTES:
        return
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


def _count_rejected(request: web.Request, status: int) -> None:
    services = request.app.get(INGEST)
    if services is not None:
        services.counters.count(services.counters.rejected, str(status))
