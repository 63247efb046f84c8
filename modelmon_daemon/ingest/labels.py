"""Ground truth as it arrives: posted by request id (`POST /v1/endpoints/{uid}/labels`)
or inline with a native batch (`labels`, one per row)."""

from __future__ import annotations

from typing import Any

from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.core.records import GeneratedIds, RequestIds


def label_values(labels: Any, n: int) -> list[Any]:
    """`labels` checked: a list of n values, each a number, string, boolean or null (no
    label for that row); the index of a bad one is named."""
    if not isinstance(labels, list) or len(labels) != n:
        raise InvalidEvent(None, "labels", f"must be a list of {n} values")
    for i, label in enumerate(labels):
        if label is not None and not isinstance(label, str | int | float | bool):
            raise InvalidEvent(i, "labels", f"must be a number, string or null, got {label!r}")
    return labels


def request_id_list(ids: RequestIds) -> list[str]:
    """A batch's request ids as strings, generated ones included."""
    if isinstance(ids, GeneratedIds):
        return ids.tolist()
    return [str(rid) for rid in ids]
