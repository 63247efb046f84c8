"""Alert configs with MLRun's field names, validated; and the events results turn into."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from modelmon_daemon.core.durations import parse_duration
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.errors import ApiError

KIND_PREFIX = {
    ResultKind.data_drift: "data-drift",
    ResultKind.concept_drift: "concept-drift",
    ResultKind.model_performance: "model-performance",
    ResultKind.system_performance: "system-performance",
    ResultKind.mm_app_anomaly: "mm-app-anomaly",
}
APP_FAILED = "mm-app-failed"
EVENT_KINDS = sorted(
    [f"{p}-{s}" for p in KIND_PREFIX.values() for s in ("detected", "suspected")] + [APP_FAILED]
)
SEVERITIES = ("low", "medium", "high")
MAX_CRITERIA_COUNT = 100  # MLRun's alerts.max_criteria_count: windows an alert counts
CHANNELS = {
    "webhook": ({"url"}, {"headers", "secret", "override_body", "verify_ssl"}),
    "slack": ({"webhook_url"}, set()),
    "email": (
        {"smtp_host", "smtp_port", "from", "to"},
        {"starttls", "username", "password", "ssl", "ca_file"},
    ),
    "command": ({"argv"}, {"timeout"}),
}
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


@dataclass
class AlertEvent:
    """Something an alert can trigger on: a result's status, or an application failure."""

    kind: str | None  # None: the entity is fine now (drives automatic reset)
    entity: str
    endpoint_id: str
    project: str
    application: str
    name: str
    value: float | None
    status: int | None
    start: float
    end: float
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def events_from_results(
    uid: str,
    project: str,
    results: list[dict[str, Any]],
    failures: list[dict[str, Any]],
) -> list[AlertEvent]:
    """Detected -> `{kind}-detected`, potential -> `{kind}-suspected`, no detection -> a
    clearing event; failures -> `mm-app-failed`."""
    out = []
    for r in results:
        if r["type"] != "result" or r["kind"] is None or r["status"] is None:
            continue
        status = ResultStatus(r["status"])
        prefix = KIND_PREFIX[ResultKind(r["kind"])]
        kind = {
            ResultStatus.detected: f"{prefix}-detected",
            ResultStatus.potential_detection: f"{prefix}-suspected",
            ResultStatus.no_detection: None,
        }.get(status, "skip")
        if kind == "skip":
            continue  # irrelevant: too little data to say anything
        out.append(
            AlertEvent(
                kind,
                f"{uid}.{r['application']}.result.{r['name']}",
                uid,
                project,
                r["application"],
                r["name"],
                r["value"],
                int(status),
                r["start"],
                r["end"],
            )
        )
    for f in failures:
        out.append(
            AlertEvent(
                APP_FAILED,
                f"{uid}.{f['application']}.result.failure",
                uid,
                project,
                f["application"],
                "failure",
                None,
                None,
                f["start"],
                f["end"],
                f["message"] or "",
            )
        )
    return out


@dataclass
class AlertConfig:
    name: str
    summary: str
    severity: str
    entity_kind: str
    entity_ids: list[str]
    events: list[str]
    count: int = 1
    period: float = 600.0
    reset_policy: str = "auto"
    cooldown: float = 1800.0
    notifications: list[dict[str, Any]] = field(default_factory=list)
    created: float = 0.0

    def matches_entity(self, entity: str) -> bool:
        for pattern in self.entity_ids:
            if pattern == "*" or pattern == entity or entity.startswith(pattern + "."):
                return True
        return False

    def matches_kind(self, kind: str) -> bool:
        return any(fnmatch.fnmatchcase(kind, p) for p in self.events)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_api(self) -> dict[str, Any]:
        """MLRun's shape."""
        return {
            "name": self.name,
            "summary": self.summary,
            "severity": self.severity,
            "entities": {"kind": self.entity_kind, "ids": self.entity_ids},
            "trigger": {"events": self.events},
            "criteria": {"count": self.count, "period": self.period},
            "reset_policy": self.reset_policy,
            "cooldown": self.cooldown,
            "notifications": [redact(n) for n in self.notifications],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AlertConfig:
        return cls(**{k: v for k, v in data.items() if k in cls.__dataclass_fields__})


def redact(channel: dict[str, Any]) -> dict[str, Any]:
    return {k: ("***" if k in ("password", "secret") and v else v) for k, v in channel.items()}


def _bad(field: str, message: str) -> ApiError:
    return ApiError(f"{field}: {message}", {"field": field}, code="invalid_alert")


def parse_alert(
    body: Any, now: float = 0.0, default_cooldown: float = 1800.0, from_config: bool = False
) -> AlertConfig:
    """An alert config in MLRun's field names -> AlertConfig, or ApiError naming the field."""
    if not isinstance(body, dict):
        raise _bad("body", "must be an object")
    name = body.get("name")
    if not isinstance(name, str) or not NAME.match(name):
        raise _bad("name", "1-128 letters, digits, '_', '.', '-'")
    severity = body.get("severity", "medium")
    if severity not in SEVERITIES:
        raise _bad("severity", f"one of {', '.join(SEVERITIES)}")
    entities = body.get("entities")
    if not isinstance(entities, dict):
        raise _bad("entities", 'must be {"kind": "model-endpoint-result", "ids": [...]}')
    ids = entities.get("ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids):
        raise _bad("entities.ids", 'a non-empty list of "*", endpoint uids or result ids')
    kind = entities.get("kind", "model-endpoint-result")
    if kind != "model-endpoint-result":
        raise _bad("entities.kind", "only model-endpoint-result")
    trigger = body.get("trigger")
    events = trigger.get("events") if isinstance(trigger, dict) else None
    if not isinstance(events, list) or not events:
        raise _bad("trigger.events", f"a non-empty list of: {', '.join(EVENT_KINDS)}")
    for i, ev in enumerate(events):
        if not isinstance(ev, str) or not any(fnmatch.fnmatchcase(k, ev) for k in EVENT_KINDS):
            raise _bad(f"trigger.events[{i}]", f"{ev!r} matches none of {', '.join(EVENT_KINDS)}")
    criteria = body.get("criteria") or {}
    if not isinstance(criteria, dict):
        raise _bad("criteria", "must be an object")
    count = criteria.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise _bad("criteria.count", "a positive integer")
    if count > MAX_CRITERIA_COUNT:
        raise _bad(
            "criteria.count", f"at most {MAX_CRITERIA_COUNT} (MLRun's alerts.max_criteria_count)"
        )
    try:
        period = parse_duration(criteria.get("period", "10m"))
    except ValueError as exc:
        raise _bad("criteria.period", str(exc)) from None
    try:
        cooldown = (
            parse_duration(body["cooldown"])
            if body.get("cooldown") is not None
            else default_cooldown
        )
    except ValueError as exc:
        raise _bad("cooldown", str(exc)) from None
    reset = body.get("reset_policy", "auto")
    if reset not in ("auto", "manual"):
        raise _bad("reset_policy", "auto or manual")
    notifications = body.get("notifications") or []
    if not isinstance(notifications, list):
        raise _bad("notifications", "must be a list of channels")
    checked = []
    for i, channel in enumerate(notifications):
        if isinstance(channel, dict) and "notification" in channel:
            channel, mlrun_cooldown = _from_mlrun_notification(i, channel)
            if mlrun_cooldown is not None and body.get("cooldown") is None:
                cooldown = mlrun_cooldown
        checked.append(_check_channel(i, channel, from_config))
    summary = body.get("summary") or name
    if not isinstance(summary, str):
        raise _bad("summary", "must be a string")
    return AlertConfig(
        name=name,
        summary=summary,
        severity=severity,
        entity_kind=kind,
        entity_ids=list(ids),
        events=list(events),
        count=count,
        period=period,
        reset_policy=reset,
        cooldown=cooldown,
        notifications=checked,
        created=now,
    )


def _from_mlrun_notification(i: int, entry: dict[str, Any]) -> tuple[Any, float | None]:
    """MLRun's serialized alert notification -> our channel, and its cooldown_period:
    `{"notification": {"kind", "name", "params", "secret_params", ...}, "cooldown_period"}`.
    Webhook params url, method (POST), headers, override_body, verify_ssl; Slack's
    incoming-webhook URL in secret_params.webhook (or params.webhook)."""
    where = f"notifications[{i}].notification"
    note = entry.get("notification")
    if not isinstance(note, dict):
        raise _bad(where, "must be an object with kind and params")
    params = note.get("params") or {}
    secrets = note.get("secret_params") or {}
    if not isinstance(params, dict) or not isinstance(secrets, dict):
        raise _bad(f"{where}.params", "params and secret_params must be objects")
    merged = {**params, **secrets}
    kind = note.get("kind")
    channel: dict[str, Any]
    if kind == "webhook":
        method = str(merged.get("method", "POST")).upper()
        if method != "POST":
            raise _bad(f"{where}.params.method", "only POST is supported")
        channel = {"kind": "webhook", "url": merged.get("url")}
        for key in ("headers", "override_body", "verify_ssl"):
            if key in merged:
                channel[key] = merged[key]
    elif kind == "slack":
        channel = {"kind": "slack", "webhook_url": merged.get("webhook")}
    else:
        raise _bad(f"{where}.kind", "webhook or slack (MLRun's kinds)")
    cooldown = entry.get("cooldown_period")
    if cooldown is None:
        return channel, None
    try:
        return channel, parse_duration(cooldown)
    except ValueError as exc:
        raise _bad(f"notifications[{i}].cooldown_period", str(exc)) from None


def _http_url(value: str) -> bool:
    parts = urlsplit(value)
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _check_channel(i: int, channel: Any, from_config: bool = False) -> dict[str, Any]:
    where = f"notifications[{i}]"
    if not isinstance(channel, dict):
        raise _bad(where, "must be an object with a kind")
    if not isinstance(channel.get("kind"), str) or channel["kind"] not in CHANNELS:
        raise _bad(f"{where}.kind", f"one of {', '.join(CHANNELS)}")
    required, optional = CHANNELS[channel["kind"]]
    missing = sorted(required - set(channel))
    if missing:
        raise _bad(f"{where}.{missing[0]}", "missing")
    unknown = sorted(set(channel) - required - optional - {"kind"})
    if unknown:
        raise _bad(f"{where}.{unknown[0]}", "unknown field")
    kind = channel["kind"]
    for key in ("url", "webhook_url", "secret", "smtp_host", "from", "username", "password"):
        if key in channel and not isinstance(channel[key], str):
            raise _bad(f"{where}.{key}", "must be a string")
    for key in ("starttls", "ssl", "verify_ssl"):
        if key in channel and not isinstance(channel[key], bool):
            raise _bad(f"{where}.{key}", "true or false")
    if "override_body" in channel and not isinstance(channel["override_body"], dict | str):
        raise _bad(f"{where}.override_body", "an object or a string (sent instead of the event)")
    if "ca_file" in channel and (not from_config or not isinstance(channel["ca_file"], str)):
        raise _bad(f"{where}.ca_file", "a path, and only in the config file")
    if "headers" in channel and (
        not isinstance(channel["headers"], dict)
        or not all(
            isinstance(k, str) and isinstance(v, str) and "\n" not in k + v and "\r" not in k + v
            for k, v in channel["headers"].items()
        )
    ):
        raise _bad(f"{where}.headers", "an object of header name -> string value")
    for key in ("url", "webhook_url"):
        if key in channel and not _http_url(channel[key]):
            raise _bad(f"{where}.{key}", "must be an http(s) URL")
    if kind == "email":
        to = channel["to"]
        if (
            not isinstance(to, list)
            or not to
            or not all(isinstance(a, str) and "@" in a for a in to)
        ):
            raise _bad(f"{where}.to", "a non-empty list of addresses")
        port = channel["smtp_port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise _bad(f"{where}.smtp_port", "a port number")
    if kind == "command":
        argv = channel["argv"]
        if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
            raise _bad(f"{where}.argv", "a non-empty list of strings")
        if "timeout" in channel:
            try:
                channel = {**channel, "timeout": parse_duration(channel["timeout"])}
            except ValueError as exc:
                raise _bad(f"{where}.timeout", str(exc)) from None
    return dict(channel)
