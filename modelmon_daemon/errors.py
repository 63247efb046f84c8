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

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class InvalidEvent(ApiError):
    """One event of a request is wrong: names its index and field."""

    code = "invalid_event"

    def __init__(self, index: int | None, field: str, message: str) -> None:
        where = f"event {index}: " if index is not None else ""
        super().__init__(f"{where}{field}: {message}", {"index": index, "field": field})


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Unavailable(ApiError):
    status = 503
    code = "unavailable"
