"""What the stream actors and the controller read of the log owner's state.

One process owns the LMDB environment next to the data dir: the writer actor (the log
owner) and, on the same node, the HTTP process that appends to its log. Stream actors and
the controller hold no LMDB handle: they see the state through this interface, served by
the writer over Ray (`actors/remote.py: LogOwnerClient`), so they can run on any node and
rebuild their buffers from the log wherever they restart. In-process (unit tests) an
LmdbStore is the same interface.
"""

from __future__ import annotations

from typing import Any, Protocol


class LogView(Protocol):
    def routes(self) -> dict[str, str]: ...

    def put_routes(self, routes: list[tuple[str, str]]) -> None: ...

    def get_endpoint(self, uid: str) -> dict[str, Any] | None: ...

    def get_endpoints_raw(self, uids: list[str]) -> list[bytes | None]: ...

    def get_endpoints_changed(
        self, uids: list[str], known: list[str | None]
    ) -> list[tuple[str, bytes | None] | None]: ...

    def get_state(self, uid: str) -> dict[str, Any]: ...

    def wal_records(self, uid: str) -> list[tuple[int, float, dict[str, Any]]]: ...

    def wal_batches(self, uid: str, seqs: list[int]) -> list[dict[str, Any]]: ...
