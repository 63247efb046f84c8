"""Log a Ray Serve deployment's predictions to the daemon: `@monitored(uid)` on the
method that predicts, or a `PredictionLogger` used by hand.

Logging never blocks or fails a request: each call appends its rows to a bounded
in-memory buffer (past `max_buffered_rows` rows are dropped and counted) and a background
thread posts them in batches (msgpack, the native form) through the Python client, which
retries 429/503. Works for sync and async methods, with or without `@serve.batch`.

    from ray import serve
    from modelmon_daemon.integrations.ray_serve import monitored

    @serve.deployment
    class Churn:
        @monitored("churn", url="http://127.0.0.1:8470", token=TOKEN)
        async def __call__(self, rows: list[list[float]]) -> list[int]:
            return self.model.predict(rows).tolist()
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from modelmon_daemon.client import Client

log = logging.getLogger(__name__)


def _as_rows(value: Any) -> list[list[Any]]:
    """A model input as rows: a DataFrame, a 2-D array or list of rows, one row (a list
    of values, a 1-D array, or a dict of feature -> value)."""
    if hasattr(value, "columns"):
        from modelmon_daemon.client import frame_rows

        return frame_rows(value, None)[1]
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, dict):
        return [list(value.values())]
    if isinstance(value, list | tuple) and value and isinstance(value[0], list | tuple | dict):
        return [list(r.values()) if isinstance(r, dict) else list(r) for r in value]
    return [list(value) if isinstance(value, list | tuple) else [value]]


def _as_outputs(value: Any, rows: int) -> list[Any]:
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, list | tuple) and len(value) == rows:
        return list(value)
    return [value] * rows  # one prediction for the whole input


class PredictionLogger:
    """Buffers predictions and posts them from a background thread."""

    def __init__(
        self,
        uid: str,
        url: str | None = None,
        token: str | None = None,
        batch_size: int = 1000,
        flush_interval: float = 1.0,
        max_buffered_rows: int = 100_000,
    ) -> None:
        self.uid = uid
        self.url, self.token = url, token
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.max_buffered_rows = max_buffered_rows
        self._rows: deque[tuple[list[Any], Any, float, float, str | None]] = deque()
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self.sent = self.dropped = self.failed = 0
        self._thread = threading.Thread(target=self._run, name="modelmon-logger", daemon=True)
        self._thread.start()

    def log(
        self,
        inputs: Any,
        outputs: Any = None,
        latency_us: float | None = None,
        request_id: str | None = None,
    ) -> None:
        """Queue one request's rows; never raises, never waits."""
        try:
            rows = _as_rows(inputs)
            outs = _as_outputs(outputs, len(rows))
            now = time.time()
            latency = float("nan") if latency_us is None else float(latency_us)
            with self._lock:
                room = self.max_buffered_rows - len(self._rows)
                if room < len(rows):
                    self.dropped += len(rows) - max(room, 0)
                    rows, outs = rows[: max(room, 0)], outs[: max(room, 0)]
                for k, (row, out) in enumerate(zip(rows, outs, strict=True)):
                    rid = (
                        None
                        if request_id is None
                        else (request_id if len(rows) == 1 else f"{request_id}-{k}")
                    )
                    self._rows.append((row, out, now, latency, rid))
                self._idle.clear()
            if len(self._rows) >= self.batch_size:
                self._wake.set()
        except Exception as exc:  # a request must never fail because of monitoring
            self.dropped += 1
            log.debug("prediction not logged: %r", exc)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until everything logged so far was posted (or failed); True if idle."""
        self._wake.set()
        return self._idle.wait(timeout)

    def close(self, timeout: float = 30.0) -> None:
        self.flush(timeout)
        self._stopped.set()
        self._wake.set()
        self._thread.join(timeout)

    def _take(self) -> list[tuple[list[Any], Any, float, float, str | None]]:
        with self._lock:
            n = min(self.batch_size, len(self._rows))
            return [self._rows.popleft() for _ in range(n)]

    def _run(self) -> None:
        client = Client(self.url, token=self.token)
        try:
            while not self._stopped.is_set():
                self._wake.wait(self.flush_interval)
                self._wake.clear()
                while batch := self._take():
                    self._post(client, batch)
                with self._lock:
                    if not self._rows:
                        self._idle.set()
        finally:
            client.close()

    def _post(
        self, client: Client, batch: list[tuple[list[Any], Any, float, float, str | None]]
    ) -> None:
        rows, outs, stamps, latencies, rids = (list(c) for c in zip(*batch, strict=True))
        try:
            client.log_events(
                self.uid,
                rows,
                outputs=outs,
                timestamps=stamps,
                latency_us=[None if v != v else v for v in latencies],
                request_ids=[r if r is not None else os.urandom(8).hex() for r in rids],
                batch_size=self.batch_size,
            )
            self.sent += len(batch)
        except Exception as exc:  # the daemon is down or refused: counted, not raised
            self.failed += len(batch)
            log.warning("posting %d predictions to %s failed: %r", len(batch), client.url, exc)


_LOGGERS: dict[tuple[Any, ...], PredictionLogger] = {}
_LOGGERS_LOCK = threading.Lock()


def logger_for(uid: str, url: str | None, token: str | None, **options: Any) -> PredictionLogger:
    """One logger per (endpoint, daemon, process): made in the replica on first use, so
    a decorated class pickles without threads or sockets."""
    key = (uid, url, token, os.getpid(), tuple(sorted(options.items())))
    with _LOGGERS_LOCK:
        found = _LOGGERS.get(key)
        if found is None:
            found = _LOGGERS[key] = PredictionLogger(uid, url, token, **options)
        return found


def monitored(
    uid: str,
    url: str | None = None,
    token: str | None = None,
    inputs: Callable[..., Any] | None = None,
    outputs: Callable[[Any], Any] | None = None,
    **options: Any,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate the method that predicts. `inputs(*args, **kwargs)` picks the model input
    from the call (default: the last positional argument), `outputs(result)` the
    predictions from the return value (default: the value itself). The call's wall time
    is logged as its latency."""

    def pick_inputs(*args: Any, **kwargs: Any) -> Any:
        return inputs(*args, **kwargs) if inputs is not None else args[-1]

    def record(started: float, args: Any, kwargs: Any, result: Any) -> None:
        try:
            logger = logger_for(uid, url, token, **options)
            latency = (time.perf_counter() - started) * 1e6
            out = outputs(result) if outputs is not None else result
            logger.log(pick_inputs(*args, **kwargs), out, latency_us=latency)
        except Exception as exc:
            log.debug("prediction not logged: %r", exc)

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def run_async(*args: Any, **kwargs: Any) -> Any:
                started = time.perf_counter()
                result = await fn(*args, **kwargs)
                record(started, args, kwargs, result)
                return result

            return run_async

        @functools.wraps(fn)
        def run(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            result = fn(*args, **kwargs)
            record(started, args, kwargs, result)
            return result

        return run

    return decorate
