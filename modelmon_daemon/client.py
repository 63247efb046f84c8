"""The daemon's HTTP API from Python: `Client(url)` (sync) and `AsyncClient(url)`.

Both are httpx clients (one connection pool each, reused across calls) that retry a
request answered 429 or 503 (honouring Retry-After, with exponential backoff) or that
could not connect. Every API method is written once, as a generator of the HTTP calls it
makes (`_Api`); the sync and async clients only differ in how they run a call. Events
are sent as msgpack in batches; pandas DataFrames keep string (categorical) columns as
strings; results come back as DataFrames on request. pandas is imported only by the
methods that use it."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import msgpack

from modelmon_daemon.core.auth import find_token
from modelmon_daemon.core.daemon_file import running_daemon_url

DEFAULT_URL = "http://127.0.0.1:8470"
URL_ENV = "MODELMON_URL"
RETRY_STATUSES = (429, 503)


def daemon_url(explicit: str | None = None, data_dir: str | None = None) -> str:
    """Where the daemon is: `url`, then $MODELMON_URL, then the daemon running on the
    data dir (its daemon.json; $MODELMON_DAEMON_DATA_DIR or ./modelmon-data by default),
    then http://127.0.0.1:8470."""
    url = explicit or os.environ.get(URL_ENV) or running_daemon_url(data_dir) or DEFAULT_URL
    return url.rstrip("/")


class ClientError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        message = body.get("error", {}).get("message") if isinstance(body, dict) else str(body)
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.body = body


class InvalidDaemonUrl(ValueError):
    """A daemon URL that is no http(s)://host[:port] URL."""


def checked_url(url: str) -> str:
    """`url` if it is an http(s) URL with a host (and a valid port; `host:port` alone is
    taken as http://host:port, as curl takes it), else InvalidDaemonUrl naming it: a typo
    gets one clear line instead of an HTTP library's error on every call."""
    if "://" not in url:
        url = f"http://{url}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is no number 0..65535
    except ValueError as exc:
        raise InvalidDaemonUrl(f"{url!r} is not a daemon URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidDaemonUrl(f"{url!r} is not a daemon URL (expected http://host:port)")
    return url


class DaemonUnreachable(OSError):
    """No connection to the daemon (after the retries); `url`: the one tried."""

    url: str = ""


@dataclass
class Call:
    """One HTTP request of an API method."""

    method: str
    path: str
    content: bytes | None = None
    content_type: str = "application/json"
    query: dict[str, Any] = field(default_factory=dict)
    accept: str | None = None  # another type than JSON: the raw bytes come back

    @classmethod
    def json(cls, method: str, path: str, body: Any = None, **query: Any) -> Call:
        content = None if body is None else json.dumps(body).encode()
        return cls(method, path, content, query=query)


Steps = Generator[Call, Any, Any]


def _backoff(attempt: int, retry_after: str | None, cap: float) -> float:
    if retry_after is not None:
        try:
            return min(max(float(retry_after), 0.0), cap)
        except ValueError:
            pass
    return min(0.25 * 2**attempt, cap)


def _answer(call: Call, response: httpx.Response) -> Any:
    if response.status_code >= 400:
        try:
            parsed = response.json()
        except ValueError:
            parsed = response.text
        raise ClientError(response.status_code, parsed)
    if call.accept:
        return response.content
    return response.json() if response.content else None


class _Api:
    """What the daemon's routes take and give, independent of how calls are sent."""

    def __init__(
        self,
        url: str | None = None,
        timeout: float = 30.0,
        token: str | None = None,
        data_dir: str | None = None,
        retries: int = 4,
        max_backoff: float = 10.0,
    ) -> None:
        self.url = checked_url(daemon_url(url, data_dir))
        self.timeout = timeout
        self.token = find_token(token, data_dir)
        self.retries = retries
        self.max_backoff = max_backoff

    def _unreachable(self, exc: Exception) -> DaemonUnreachable:
        error = DaemonUnreachable(str(exc) or repr(exc))
        error.url = self.url
        return error

    def _headers(self, call: Call) -> dict[str, str]:
        headers = {}
        if call.content is not None:
            headers["Content-Type"] = call.content_type
        if call.accept:
            headers["Accept"] = call.accept
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _request_args(self, call: Call) -> dict[str, Any]:
        return {
            "method": call.method,
            "url": self.url + call.path,
            "content": call.content,
            "params": {k: v for k, v in call.query.items() if v is not None},
            "headers": self._headers(call),
        }

    # -- the routes: generators of Calls (annotated Any: Client returns the value, -----
    # -- AsyncClient an awaitable of it) ------------------------------------------------

    def request(self, method: str, path: str, body: Any = None, **query: Any) -> Any:
        """Any route: JSON body in, JSON answer out."""
        return (yield Call.json(method, path, body, **query))

    def health(self) -> Any:
        return (yield Call.json("GET", "/healthz"))

    def status(self) -> Any:
        return (yield Call.json("GET", "/v1/status"))

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
    ) -> Any:
        """Register (or update) an endpoint. `reference` is a pandas DataFrame (string
        columns become categorical features), a numpy array, a list of rows, or the path
        of a Parquet/CSV file the daemon can read; the daemon computes MLRun-format
        feature stats from it."""
        body: dict[str, Any] = {"project": project, "name": name, **extra}
        if reference is not None:
            if isinstance(reference, str):
                body["reference"] = {"path": reference}
            else:
                names, rows = frame_rows(reference, feature_names)
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
        return dict((yield Call.json("POST", "/v1/endpoints", body)))

    def endpoints(
        self,
        project: str | None = None,
        name: str | None = None,
        model: str | None = None,
        limit: int | None = None,
        offset: int = 0,
        labels: list[str] | None = None,
    ) -> Any:
        """Endpoint records, filtered (`labels`: "key=value" or "key", all must hold);
        every page unless `limit` is given."""
        filters = {"project": project, "name": name, "model": model, "label": labels or None}
        if limit is not None:
            page = yield Call.json("GET", "/v1/endpoints", limit=limit, offset=offset, **filters)
            return list(page["endpoints"])
        out: list[dict[str, Any]] = []
        while True:
            page = yield Call.json("GET", "/v1/endpoints", limit=1000, offset=offset, **filters)
            out.extend(page["endpoints"])
            offset += len(page["endpoints"])
            if not page["endpoints"] or offset >= page["total"]:
                return out

    def endpoint(self, uid: str) -> Any:
        return (yield Call.json("GET", f"/v1/endpoints/{uid}"))

    def delete_endpoint(self, uid: str, purge: bool = False) -> Any:
        return (yield Call.json("DELETE", f"/v1/endpoints/{uid}", purge="true" if purge else None))

    def log_events(
        self,
        uid: str,
        inputs: Any,
        outputs: Any = None,
        timestamps: Any = None,
        latency_us: Any = None,
        request_ids: Any = None,
        batch_size: int = 10_000,
        labels: Any = None,
    ) -> Any:
        """Post events in the native form, `batch_size` rows per request (msgpack).
        `inputs`: DataFrame (sent as columns, strings kept), 2-D array or rows;
        `outputs`: values, rows, or a DataFrame of named outputs; timestamps: datetimes,
        ISO strings or epoch seconds; `labels`: ground truth known already, one per row
        (None for none). Returns the number of events accepted."""
        columns = _columns(inputs)
        rows = None if columns is not None else frame_rows(inputs, None)[1]
        n = len(rows) if rows is not None else len(next(iter(columns.values()), []))  # type: ignore[union-attr]
        extra = {
            "outputs": _columns(outputs) if hasattr(outputs, "columns") else _list(outputs),
            "timestamps": _times(timestamps),
            "latency_us": _list(latency_us),
            "request_ids": _list(request_ids),
            "labels": _list(labels),
        }
        accepted = 0
        for start in range(0, n, batch_size):
            part = slice(start, start + batch_size)
            body: dict[str, Any] = {
                "inputs": rows[part]
                if rows is not None
                else {k: v[part] for k, v in columns.items()}  # type: ignore[union-attr]
            }
            for key, values in extra.items():
                if isinstance(values, dict):
                    body[key] = {k: v[part] for k, v in values.items()}
                elif values is not None:
                    body[key] = values[part]
            content = msgpack.packb(body, use_bin_type=True)
            answer = yield Call(
                "POST", f"/v1/endpoints/{uid}/events", content, "application/msgpack"
            )
            accepted += int(answer["accepted"])
        return accepted

    def log_labels(self, uid: str, request_ids: Any, labels: Any) -> Any:
        body = {"request_ids": _list(request_ids), "labels": _list(labels)}
        return int((yield Call.json("POST", f"/v1/endpoints/{uid}/labels", body))["accepted"])

    def log_mlrun_events(self, events: list[dict[str, Any]]) -> Any:
        return (yield Call.json("POST", "/v1/events", events))

    def events(self, uid: str, start: Any = None, end: Any = None, limit: int | None = None) -> Any:
        """The endpoint's stored events as a pandas DataFrame (Arrow IPC on the wire),
        oldest first; `start`/`end` are ISO strings or epoch seconds."""
        import pyarrow as pa

        raw = yield Call(
            "GET",
            f"/v1/endpoints/{uid}/events",
            query={"start": start, "end": end, "limit": limit},
            accept="application/vnd.apache.arrow.stream",
        )
        return pa.ipc.open_stream(raw).read_all().to_pandas()

    def results(self, uid: str, **query: Any) -> Any:
        return list((yield Call.json("GET", f"/v1/endpoints/{uid}/results", **query))["results"])

    def results_frame(self, uid: str, **query: Any) -> Any:
        """Results as a pandas DataFrame, start/end as UTC datetimes."""
        import pandas as pd

        answer = yield Call.json("GET", f"/v1/endpoints/{uid}/results", **query)
        frame = pd.DataFrame(answer["results"])
        for key in ("start", "end"):
            if key in frame:
                frame[key] = pd.to_datetime(frame[key], utc=True)
        return frame

    def alerts(self) -> Any:
        return list((yield Call.json("GET", "/v1/alerts"))["alerts"])

    def alert(self, name: str) -> Any:
        return (yield Call.json("GET", f"/v1/alerts/{name}"))

    def create_alert(self, config: dict[str, Any]) -> Any:
        return (yield Call.json("POST", "/v1/alerts", config))

    def delete_alert(self, name: str) -> Any:
        return (yield Call.json("DELETE", f"/v1/alerts/{name}"))

    def reset_alert(self, name: str, entity: str | None = None) -> Any:
        return (yield Call.json("POST", f"/v1/alerts/{name}/reset", None, entity=entity))

    def alert_events(self, name: str) -> Any:
        return list((yield Call.json("GET", f"/v1/alerts/{name}/events"))["events"])


API_METHODS = [
    name for name, value in vars(_Api).items() if not name.startswith("_") and callable(value)
]


class Client(_Api):
    """Synchronous client. `token`: the daemon's bearer token; default $MODELMON_TOKEN,
    then the `auth_token` file of `data_dir` (default $MODELMON_DAEMON_DATA_DIR or
    ./modelmon-data). Use as a context manager, or call close(), to release connections."""

    def __init__(self, url: str | None = None, timeout: float = 30.0, **kw: Any) -> None:
        super().__init__(url, timeout, **kw)
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _execute(self, call: Call) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = self.http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                if attempt == self.retries or not isinstance(exc, httpx.ConnectError):
                    raise self._unreachable(exc) from None
                time.sleep(_backoff(attempt, None, self.max_backoff))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                time.sleep(_backoff(attempt, response.headers.get("Retry-After"), self.max_backoff))
                continue
            return _answer(call, response)
        raise AssertionError("unreachable")

    def _run(self, steps: Steps) -> Any:
        try:
            call = next(steps)
            while True:
                call = steps.send(self._execute(call))
        except StopIteration as done:
            return done.value


class AsyncClient(_Api):
    """The same methods as Client, awaitable: `async with AsyncClient(url) as c: await
    c.log_events(uid, frame)`."""

    def __init__(self, url: str | None = None, timeout: float = 30.0, **kw: Any) -> None:
        super().__init__(url, timeout, **kw)
        self.http = httpx.AsyncClient(timeout=timeout)

    async def aclose(self) -> None:
        await self.http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def _execute(self, call: Call) -> Any:
        for attempt in range(self.retries + 1):
            try:
                response = await self.http.request(**self._request_args(call))
            except httpx.TransportError as exc:
                if attempt == self.retries or not isinstance(exc, httpx.ConnectError):
                    raise self._unreachable(exc) from None
                await asyncio.sleep(_backoff(attempt, None, self.max_backoff))
                continue
            if response.status_code in RETRY_STATUSES and attempt < self.retries:
                delay = _backoff(attempt, response.headers.get("Retry-After"), self.max_backoff)
                await asyncio.sleep(delay)
                continue
            return _answer(call, response)
        raise AssertionError("unreachable")

    async def _run(self, steps: Steps) -> Any:
        try:
            call = next(steps)
            while True:
                call = steps.send(await self._execute(call))
        except StopIteration as done:
            return done.value


def _sync(method: Callable[..., Steps]) -> Callable[..., Any]:
    @functools.wraps(method)
    def run(self: Client, *args: Any, **kwargs: Any) -> Any:
        return self._run(method(self, *args, **kwargs))

    return run


def _async(method: Callable[..., Steps]) -> Callable[..., Any]:
    @functools.wraps(method)
    async def run(self: AsyncClient, *args: Any, **kwargs: Any) -> Any:
        return await self._run(method(self, *args, **kwargs))

    return run


for _name in API_METHODS:
    setattr(Client, _name, _sync(getattr(_Api, _name)))
    setattr(AsyncClient, _name, _async(getattr(_Api, _name)))


def _list(values: Any) -> list[Any] | None:
    if values is None:
        return None
    if hasattr(values, "tolist"):
        values = values.tolist()
    return [None if isinstance(v, float) and v != v else v for v in values]


def _plain(value: Any) -> Any:
    """A JSON/msgpack value: numpy scalars as Python ones, NaN / NA / NaT as None."""
    if value is None:
        return None
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and value != value:
        return None
    if type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value


def _column_values(series: Any) -> list[Any]:
    """One DataFrame column: numbers as floats, anything else (strings, categories) as
    its values; missing values as None."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(series.dtype):
        return [_plain(v) for v in series.astype(object).tolist()]
    if pd.api.types.is_numeric_dtype(series.dtype):
        values = series.to_numpy(dtype=float, na_value=float("nan")).tolist()
        return [None if v != v else v for v in values]
    return [_plain(v) for v in series.astype(object).tolist()]


def _columns(data: Any) -> dict[str, list[Any]] | None:
    """A DataFrame as {column: values} (None for anything else)."""
    if not hasattr(data, "columns"):
        return None
    return {str(c): _column_values(data[c]) for c in data.columns}


def frame_rows(data: Any, names: list[str] | None) -> tuple[list[str] | None, list[list[Any]]]:
    """(column names if known, rows with NaN as None) from a DataFrame, array or rows;
    a DataFrame's string columns stay strings."""
    if hasattr(data, "columns"):
        chosen = names or [str(c) for c in data.columns]
        columns = [_column_values(data[c]) for c in chosen]
        return chosen, [list(row) for row in zip(*columns, strict=True)]
    if hasattr(data, "tolist"):
        data = data.tolist()
    return names, [[_plain(v) for v in row] for row in data]


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
