"""HTTP handlers of /v1/alerts: MLRun's alert configs, their state, reset and history."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiohttp import web

from modelmon_daemon.alerts.model import AlertConfig, parse_alert
from modelmon_daemon.core.errors import ApiError, Forbidden, NotFound
from modelmon_daemon.core.times import iso
from modelmon_daemon.server.ingest_routes import read_body
from modelmon_daemon.server.state import SERVICES, Services, json_response


def _services(request: web.Request) -> Services:
    return request.app[SERVICES]


def alert_record(services: Services, alert: AlertConfig) -> dict[str, Any]:
    states = services.store.alert_states(alert.name)
    active = sorted(e for e, s in states.items() if s.get("active"))
    return {
        **alert.to_api(),
        "created": iso(alert.created),
        "active": bool(active),
        "active_entities": active,
        "notifications_sent": sum(int(s.get("notifications", 0)) for s in states.values()),
    }


def _alert(services: Services, name: str) -> AlertConfig:
    alert = services.store.get_alert(name)
    if alert is None:
        raise NotFound(f"unknown alert {name!r}", {"name": name})
    return alert


async def create_alert(request: web.Request) -> web.Response:
    services = _services(request)
    body = await read_body(request)
    alert = parse_alert(body, time.time(), services.settings.notifications.default_cooldown)
    for i, channel in enumerate(alert.notifications):
        if channel["kind"] == "command" and not services.settings.notifications.allow_http_commands:
            raise Forbidden(
                "command notifications come from the config file only "
                "(notifications.allow_http_commands = false)",
                {"field": f"notifications[{i}].kind"},
            )
    existing = services.store.get_alert(alert.name)
    if existing is not None:
        alert.created = existing.created
    else:
        limit = services.settings.notifications.max_alerts
        if services.store.alert_count() >= limit:  # every window is matched against them
            raise ApiError(
                f"{limit} alerts exist (notifications.max_alerts): delete one, or update an "
                "existing one by its name",
                {"field": "name", "limit": limit},
                status=409,
                code="limit_reached",
            )
    await asyncio.get_running_loop().run_in_executor(
        services.executor, services.store.put_alert, alert
    )
    return json_response(alert_record(services, alert), 200 if existing else 201)


async def list_alerts(request: web.Request) -> web.Response:
    services = _services(request)
    return json_response(
        {"alerts": [alert_record(services, a) for a in services.store.list_alerts()]}
    )


async def get_alert(request: web.Request) -> web.Response:
    services = _services(request)
    return json_response(alert_record(services, _alert(services, request.match_info["name"])))


async def delete_alert(request: web.Request) -> web.Response:
    services = _services(request)
    name = request.match_info["name"]
    _alert(services, name)
    await asyncio.get_running_loop().run_in_executor(
        services.executor, services.store.delete_alert, name
    )
    return json_response({"deleted": name})


async def reset_alert(request: web.Request) -> web.Response:
    services = _services(request)
    name = request.match_info["name"]
    _alert(services, name)
    entity = request.query.get("entity")
    n = await asyncio.get_running_loop().run_in_executor(
        services.executor, services.store.reset_alert, name, entity
    )
    return json_response({"name": name, "reset": n})


async def alert_events(request: web.Request) -> web.Response:
    services = _services(request)
    name = request.match_info["name"]
    _alert(services, name)
    history = services.store.alert_history(name)
    for record in history:
        for key in ("time", "start", "end", "retry_at", "until"):
            if isinstance(record.get(key), int | float):
                record[key] = iso(record[key])
    return json_response({"events": history})


def add_routes(app: web.Application) -> None:
    app.router.add_post("/v1/alerts", create_alert)
    app.router.add_get("/v1/alerts", list_alerts)
    app.router.add_get("/v1/alerts/{name}", get_alert)
    app.router.add_delete("/v1/alerts/{name}", delete_alert)
    app.router.add_post("/v1/alerts/{name}/reset", reset_alert)
    app.router.add_get("/v1/alerts/{name}/events", alert_events)
