"""The daemon's HTTP API from Python: `modelmon_daemon.Client(url)`.

Typed methods for every route; events are sent as msgpack in batches; pandas DataFrames
and numpy arrays are accepted where data goes in, and results come back as a DataFrame.
pandas is imported only by the methods that use it."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import msgpack

from modelmon_daemon.core.auth import find_token

DEFAULT_URL = "http://127.0.0.1:8470"


class ClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class Client:
    """`token`: the daemon's bearer token; default $MODELMON_TOKEN, then the `auth_token`
    file of `data_dir` (default $MODELMON_DAEMON_DATA_DIR or ./modelmon-data)."""

    def __init__(
        self,
        url: str | None = None,
        timeout: float = 30.0,
        token: str | None = None,
        data_dir: str | None = None,
    ) -> None:
        self.url = (url or os.environ.get("MODELMON_URL") or DEFAULT_URL).rstrip("/")
        self.timeout = timeout
        self.token = find_token(token, data_dir)

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        data = None if body is None else json.dumps(body).encode()
        return self._send(method, path, data, "application/json", query)

    def _send(
        self,
        method: str,
        path: str,
        data: bytes | None,
        content_type: str,
        query: dict[str, Any],
        accept: str | None = None,
    ) -> Any:
        """JSON back, or the raw bytes when `accept` asks for another type."""
        params = {k: v for k, v in query.items() if v is not None}
        url = self.url + path + ("?" + urllib.parse.urlencode(params) if params else "")
        req = urllib.request.Request(url, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", content_type)
        if accept:
            req.add_header("Accept", accept)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
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
        if accept:
            return raw
        return json.loads(raw) if raw else None

    def health(self) -> Any:
        return self.request("GET", "/healthz")

    def status(self) -> Any:
        return self.request("GET", "/v1/status")

    def register_endpoint(
        self,
        project: str | None = None,
        name: str | None = None,
        feature_names: list[str] | None = None,
        reference: Any = None,
        feature_stats: dict[str, Any] | None = None,
        label_names: list[str] | None = None,
        uid: str | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        """Register (or update) an endpoint. `reference` is a pandas DataFrame, a numpy
        array, a list of rows, or the path of a Parquet/CSV file the daemon can read;
        the daemon computes MLRun-format feature stats from it."""
        body: dict[str, Any] = {"project": project, "name": name, **extra}
        if reference is not None:
            if isinstance(reference, str):
                body["reference"] = {"path": reference}
            else:
                names, rows = _rows(reference, feature_names)
                feature_names = feature_names or names
                body["reference"] = {"rows": rows}
        for key, value in (
            ("feature_names", feature_names),
            ("feature_stats", feature_stats),
            ("label_names", label_names),
            ("uid", uid),
        ):
            if value is not None:
                body[key] = value
        return dict(self.request("POST", "/v1/endpoints", body))

    def endpoints(
        self,
        project: str | None = None,
        name: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Endpoint records, filtered; every page unless `limit` is given."""
        filters = {"project": project, "name": name, "model": model}
        if limit is not None:
            body = self.request("GET", "/v1/endpoints", limit=limit, offset=offset, **filters)
            return list(body["endpoints"])
        out: list[dict[str, Any]] = []
        while True:
            body = self.request("GET", "/v1/endpoints", limit=1000, offset=offset, **filters)
            out.extend(body["endpoints"])
            offset += len(body["endpoints"])
            if not body["endpoints"] or offset >= body["total"]:
                return out

    def endpoint(self, uid: str) -> Any:
        return self.request("GET", f"/v1/endpoints/{uid}")

    def log_events(
        self,
        uid: str,
        inputs: Any,
        outputs: Any = None,
        timestamps: Any = None,
        latency_us: Any = None,
        request_ids: Any = None,
        batch_size: int = 10_000,
    ) -> int:
        """Post events in the native form, `batch_size` rows per request (msgpack).
        `inputs`: DataFrame, 2-D array or rows; timestamps: datetimes, ISO strings or
        epoch seconds. Returns the number of events accepted."""
        _, rows = _rows(inputs, None)
        columns = {
            "outputs": _list(outputs),
            "timestamps": _times(timestamps),
            "latency_us": _list(latency_us),
            "request_ids": _list(request_ids),
        }
        accepted = 0
        for start in range(0, len(rows), batch_size):
            body: dict[str, Any] = {"inputs": rows[start : start + batch_size]}
            for key, values in columns.items():
                if values is not None:
                    body[key] = values[start : start + batch_size]
            data = msgpack.packb(body, use_bin_type=True)
            answer = self._send(
                "POST", f"/v1/endpoints/{uid}/events", data, "application/msgpack", {}
            )
            accepted += int(answer["accepted"])
        return accepted

    def log_labels(self, uid: str, request_ids: Any, labels: Any) -> int:
        body = {"request_ids": _list(request_ids), "labels": _list(labels)}
        return int(self.request("POST", f"/v1/endpoints/{uid}/labels", body)["accepted"])

    def events(
        self,
        uid: str,
        start: Any = None,
        end: Any = None,
        limit: int | None = None,
    ) -> Any:
        """The endpoint's stored events as a pandas DataFrame (Arrow IPC on the wire),
        oldest first; `start`/`end` are ISO strings or epoch seconds."""
        import pyarrow as pa

        query = {"start": start, "end": end, "limit": limit}
        raw = self._send(
            "GET",
            f"/v1/endpoints/{uid}/events",
            None,
            "",
            query,
            accept="application/vnd.apache.arrow.stream",
        )
        return pa.ipc.open_stream(raw).read_all().to_pandas()

    def results_frame(self, uid: str, **query: Any) -> Any:
        """Results as a pandas DataFrame, start/end as UTC datetimes."""
        import pandas as pd

        frame = pd.DataFrame(self.results(uid, **query))
        for key in ("start", "end"):
            if key in frame:
                frame[key] = pd.to_datetime(frame[key], utc=True)
        return frame

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


def _list(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [None if isinstance(v, float) and v != v else v for v in values]


def _rows(data: Any, names: list[str] | None) -> tuple[list[str] | None, list[list[Any]]]:
    """(column names if known, rows with NaN as None) from a DataFrame, array or rows."""
    columns = getattr(data, "columns", None)
    if columns is not None:
        chosen = names or [str(c) for c in columns]
        matrix = data[chosen].to_numpy(dtype=float)
        return chosen, [[None if v != v else float(v) for v in row] for row in matrix.tolist()]
    if hasattr(data, "tolist"):
        data = data.tolist()
    return names, [[None if isinstance(v, float) and v != v else v for v in row] for row in data]


def _times(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if hasattr(values, "tolist") and not hasattr(values, "dt"):
        values = values.tolist()
    out = []
    for v in values:
        if hasattr(v, "timestamp"):
            out.append(v.timestamp())
        elif hasattr(v, "astype") and "datetime64" in str(getattr(v, "dtype", "")):
            out.append(float(v.astype("datetime64[us]").astype("int64")) / 1e6)
        else:
            out.append(v)
    return out
