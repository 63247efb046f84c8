"""Notification text from `config/alert_templates.toml` (data, not code)."""

from __future__ import annotations

import tomllib
import urllib.parse
from pathlib import Path
from typing import Any

from modelmon_daemon.alerts.model import AlertConfig, AlertEvent
from modelmon_daemon.core.enums import ResultStatus
from modelmon_daemon.core.resources import default_file
from modelmon_daemon.core.times import iso

DEFAULT_TEMPLATES = default_file("alert_templates.toml")


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def load_templates(path: str | Path | None = None) -> dict[str, dict[str, str]]:
    file = Path(path) if path else DEFAULT_TEMPLATES
    data = tomllib.loads(file.read_text())
    if "default" not in data or "text" not in data["default"] or "subject" not in data["default"]:
        raise ValueError(f"{file}: needs a [default] table with subject and text")
    return data


def _slack_escaped(values: dict[str, Any]) -> dict[str, Any]:
    """Slack's escaping of &, < and > in message text (`<!channel>` would notify a whole
    channel, `<http://x|text>` would hide a link)."""
    return {
        key: value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        if isinstance(value, str)
        else value
        for key, value in values.items()
    }


def _line(event: AlertEvent) -> str:
    status = "-" if event.status is None else ResultStatus(event.status).name
    value = "-" if event.value is None else f"{event.value:.6g}"
    return f"- {event.application}.{event.name} = {value} ({status}) [{event.kind}]"


def fields(alert: AlertConfig, event: AlertEvent, public_url: str) -> dict[str, Any]:
    query = urllib.parse.urlencode({"application": event.application, "name": event.name})
    status = "-" if event.status is None else ResultStatus(event.status).name
    value = "-" if event.value is None else f"{event.value:.6g}"
    return {
        "alert": alert.name,
        "summary": alert.summary,
        "severity": alert.severity,
        "kind": event.kind,
        "endpoint_id": event.endpoint_id,
        "project": event.project,
        "application": event.application,
        "result": event.name,
        "entity": event.entity,
        "value": value,
        "status": status,
        "start": iso(event.start),
        "end": iso(event.end),
        "link": f"{public_url.rstrip('/')}/v1/endpoints/{event.endpoint_id}/results?{query}",
        "message": event.message,
    }


def render(
    alert: AlertConfig,
    fired: list[AlertEvent],
    public_url: str,
    templates: dict[str, dict[str, str]],
) -> dict[str, Any]:
    """subject, text and the JSON payload webhooks receive, for every result that fired in
    one window of one endpoint; the first (most severe) one fills the single-result
    placeholders, {results} and {count} list them all."""
    event = fired[0]
    values = {
        **fields(alert, event, public_url),
        "results": "\n".join(_line(e) for e in fired),
        "count": len(fired),
    }
    chosen = {**templates["default"], **templates.get(event.kind or "", {})}
    return {
        "subject": chosen["subject"].format_map(_Blank(values)),
        "text": chosen["text"].format_map(_Blank(values)),
        # Slack reads <...> as mentions and links: values (names that came over the
        # network) are escaped there, the template's own markup is not
        "slack_text": chosen["text"].format_map(_Blank(_slack_escaped(values))),
        "payload": {
            "alert": alert.name,
            "summary": alert.summary,
            "severity": alert.severity,
            "event": {
                **event.to_dict(),
                "start": values["start"],
                "end": values["end"],
                "status_name": values["status"],
            },
            "results": [
                {
                    **e.to_dict(),
                    "start": iso(e.start),
                    "end": iso(e.end),
                    "status_name": None if e.status is None else ResultStatus(e.status).name,
                }
                for e in fired
            ],
            "link": values["link"],
        },
    }
