"""Errors that carry an HTTP status and the {"error": {code, message, details}} body."""

from __future__ import annotations

from typing import Any


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, details: dict[str, Any] | None = None, **kw: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or {}
        if "status" in kw:
            self.status = kw["status"]
        if "code" in kw:
            self.code = kw["code"]
        self.headers: dict[str, str] = dict(kw.get("headers") or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidEvent(ApiError):
    """One event of a request is wrong: names its index and field."""

    code = "invalid_event"

    def __init__(self, index: int | None, field: str, message: str) -> None:
        where = f"event {index}: " if index is not None else ""
        super().__init__(f"{where}{field}: {message}", {"index": index, "field": field})
        self.reason = message


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Unavailable(ApiError):
    """Retry later: the daemon is starting or stopping, or something it needs (an actor,
    the log, the Parquet store) failed for now. Always with Retry-After."""

    status = 503
    code = "unavailable"

    def __init__(self, message: str, retry_after: int = 5, code: str = "unavailable") -> None:
        super().__init__(
            message,
            {"retry_after_s": retry_after},
            code=code,
            headers={"Retry-After": str(retry_after)},
        )


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message, headers={"WWW-Authenticate": 'Bearer realm="modelmon"'})


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class Overloaded(ApiError):
    """Back off and retry: the daemon is behind (429) or out of room (503, 507)."""

    status = 429
    code = "overloaded"

    def __init__(
        self, message: str, retry_after: float, status: int = 429, code: str = "overloaded"
    ) -> None:
        seconds = str(max(1, int(retry_after + 0.999)))
        super().__init__(
            message,
            {"retry_after_s": int(seconds)},
            status=status,
            code=code,
            headers={"Retry-After": seconds},
        )


def one_line(exc: BaseException) -> str:
    """An error as a person reads it, in one line: its type and message. A Ray call's
    error is the remote exception itself (Ray wraps it, and the wrapper's repr,
    `RayTaskError(OSError)()`, drops the message that says what went wrong)."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException):
        exc = cause
    message = " ".join(str(exc).split())
    name = type(exc).__name__
    return f"{name}: {message}" if message else name
