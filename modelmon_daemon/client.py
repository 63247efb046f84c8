"""A small HTTP client of the daemon's API (standard library only)."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8470"


class ClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, url: str | None = None, timeout: float = 30.0) -> None:
        self.url = (url or os.environ.get("MODELMON_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        params = {k: v for k, v in query.items() if v is not None}
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                parsed = json.loads(raw)
            except ValueError:
                parsed = raw.decode(errors="replace")
            raise ClientError(exc.code, parsed) from None
        return json.loads(raw) if raw else None

    def health(self) -> Any:
        return self.request("GET", "/healthz")

    def status(self) -> Any:
        return self.request("GET", "/v1/status")

    def register_endpoint(self, **spec: Any) -> Any:
        return self.request("POST", "/v1/endpoints", spec)

    def endpoints(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/endpoints")["endpoints"])

    def endpoint(self, uid: str) -> Any:
        return self.request("GET", f"/v1/endpoints/{uid}")

    def log_events(self, uid: str, **columns: Any) -> Any:
        return self.request("POST", f"/v1/endpoints/{uid}/events", columns)

    def log_mlrun_events(self, events: list[dict[str, Any]]) -> Any:
        return self.request("POST", "/v1/events", events)

    def results(self, uid: str, **query: Any) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/endpoints/{uid}/results", **query)["results"])

    def alerts(self) -> list[dict[str, Any]]:
        return list(self.request("GET", "/v1/alerts")["alerts"])

    def alert(self, name: str) -> Any:
        return self.request("GET", f"/v1/alerts/{name}")

    def create_alert(self, config: dict[str, Any]) -> Any:
        return self.request("POST", "/v1/alerts", config)

    def delete_alert(self, name: str) -> Any:
        return self.request("DELETE", f"/v1/alerts/{name}")

    def reset_alert(self, name: str, entity: str | None = None) -> Any:
        return self.request("POST", f"/v1/alerts/{name}/reset", None, entity=entity)

    def alert_events(self, name: str) -> list[dict[str, Any]]:
        return list(self.request("GET", f"/v1/alerts/{name}/events")["events"])
