"""Typed application state shared by the routes: the services one daemon process holds,
and the JSON response every route answers with."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from modelmon_daemon.config import Settings
from modelmon_daemon.core.records import EndpointSpec
from modelmon_daemon.server.delivery import OutboxDelivery
from modelmon_daemon.server.directory import ActorDirectory
from modelmon_daemon.server.prometheus import MetricsExporter
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.parquet_store import ParquetStore
from modelmon_daemon.storage.wal import CommitLog

MSGPACK_TYPES = ("application/msgpack", "application/x-msgpack", "application/vnd.msgpack")


@dataclass
class IngestCounters:
    requests: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    events_accepted: int = 0
    rows_accepted: int = 0

    def count(self, table: dict[str, int], key: str, n: int = 1) -> None:
        table[key] = table.get(key, 0) + n


@dataclass(kw_only=True)
class IngestServices:
    """What the ingestion routes and the middlewares need, on the daemon's node and on
    the ingestion server of every other node alike."""

    settings: Settings
    log: CommitLog | None = None
    specs: dict[str, EndpointSpec] = field(default_factory=dict)
    counters: IngestCounters = field(default_factory=IngestCounters)
    exporter: MetricsExporter = field(default_factory=MetricsExporter)
    token: str = ""
    allowed_hosts: frozenset[str] | None = None
    large_requests: int = 0
    labels_in_flight: int = 0  # label requests waiting for the labels' owner
    parse_executor: ThreadPoolExecutor | None = None
    wal_rows_read: tuple[float, int, int] = (-1.0, 0, 0)  # (when, wal rows, logged then)
    # labels and the notification outbox, through their owner (remote.LogOwnerState)
    owner_state: Any = None

    def stored_spec(self, uid: str) -> dict[str, Any] | None:
        """An endpoint record not in `specs`, read where this process can read it
        synchronously (the daemon's LMDB); None elsewhere (see fetch_specs)."""
        return None

    async def fetch_specs(self, uids: list[str]) -> int:
        """Bring the stored records of `uids` into `specs`; how many were found."""
        return 0

    def logged_rows(self) -> int:
        """Rows in the durability log whose window is not committed yet."""
        return 0

    def log_stats(self) -> dict[str, float]:
        """The durability log's group commits (CommitLog.stats), empty while it is not up:
        what /v1/status, a node server's /healthz and /metrics show."""
        return self.log.stats() if self.log is not None else {}

    def pending_rows(self) -> int:
        """Rows acknowledged (or being acknowledged) whose window is not committed yet.
        The log's row count is read at most every 50 ms (a read per request cost ~5% of a
        single-event post); rows this process logged since are added, so the figure
        never undercounts (commits by the writer show at the next read)."""
        logged = self.log.committed_rows if self.log is not None else 0
        queued = self.log.queued_rows if self.log is not None else 0
        when, wal_rows, logged_then = self.wal_rows_read
        now = time.monotonic()
        if now - when > 0.05:
            wal_rows, logged_then = self.logged_rows(), logged
            self.wal_rows_read = (now, wal_rows, logged_then)
        return wal_rows + (logged - logged_then) + queued


@dataclass(kw_only=True)
class Services(IngestServices):
    """The daemon's own process: the whole API, next to the data dir."""

    store: LmdbStore
    parquet: ParquetStore
    directory: ActorDirectory
    executor: ThreadPoolExecutor
    delivery: OutboxDelivery | None = None
    started: float = 0.0
    runtime: Any = None  # creates the actors (actors/remote.py: RayRuntime)
    node_servers: dict[str, str] = field(default_factory=dict)  # node id -> ingestion URL
    # node id -> why its ingestion server did not start (the last reason)
    node_server_errors: dict[str, str] = field(default_factory=dict)

    def stored_spec(self, uid: str) -> dict[str, Any] | None:
        return self.store.get_endpoint(uid)

    def logged_rows(self) -> int:
        return self.store.wal_rows()


INGEST = web.AppKey("ingest", IngestServices)
SERVICES = web.AppKey("services", Services)


def json_response(data: Any, status: int = 200) -> web.Response:
    """orjson: fast, numpy-aware, and NaN becomes null (valid JSON)."""
    body = orjson.dumps(data, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS)
    return web.Response(body=body, status=status, content_type="application/json")
