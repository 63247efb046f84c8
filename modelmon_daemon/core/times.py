"""Times on the wire and in storage: epoch seconds in, ISO 8601 UTC out, never raising on
a stored value."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import msgpack


def parse_time(value: Any) -> float:
    """Epoch seconds from ISO 8601 / MLRun's "YYYY-MM-DD HH:MM:SS.ffffff" (UTC if naive),
    a number of epoch seconds, or msgpack's timestamp type (what msgpack libraries of
    other languages write for a time value)."""
    if isinstance(value, bool):
        raise ValueError(f"not a time: {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"not a time: {value!r}")
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith("Z"):
            text = text[:-1] + "+00:00"
        try:
            moment = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r}") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return moment.timestamp()
    if isinstance(value, msgpack.Timestamp):  # after str: MLRun's times are strings
        return float(value.to_unix())
    raise ValueError(f"not a time: {value!r}")


MAX_FUTURE_S = 86400.0  # event times more than a day ahead are refused
LATEST_QUERY_TIME = 253402300799.0  # 9999-12-31T23:59:59Z


def event_time(value: Any, now: float) -> float:
    """An event's time: parse_time, then inside [1970, now + 1 day] (DESIGN: sane range).
    A time outside would put rows in windows that never close, or never open."""
    ts = parse_time(value)
    if ts < 0.0:
        raise ValueError(f"{value!r} is before 1970")
    if ts > now + MAX_FUTURE_S:
        raise ValueError(f"{value!r} is more than a day in the future")
    return ts


def query_time(value: Any) -> float:
    """A query bound: parse_time within 1970..9999 (so it always converts to a date)."""
    ts = parse_time(value)
    if not 0.0 <= ts <= LATEST_QUERY_TIME:
        raise ValueError(f"{value!r} is outside 1970..9999")
    return ts


def iso(ts: Any) -> str | None:
    """ISO 8601 UTC, or None for anything that is no representable time: a stored value
    must never break a read path."""
    if ts is None or isinstance(ts, bool) or not isinstance(ts, int | float):
        return None
    try:
        return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None
