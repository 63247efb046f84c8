"""All LMDB state of the daemon, in one environment under `{data_dir}/lmdb`, one module
per table under `storage/lmdb/`: `environment` (the map, `meta`), `log` (the durability
log and pending files), `endpoints` (records and routes), `windows` (commits and
per-endpoint state), `alerts` (alerts, their state and history, the outbox) and `labels`
(ground truth and its join with predictions). `LmdbStore` is all of them over one
environment: a window's commit touches several tables in one transaction.
"""

from __future__ import annotations

from modelmon_daemon.storage.lmdb.alerts import AlertsTable, Notifier
from modelmon_daemon.storage.lmdb.endpoints import EndpointsTable
from modelmon_daemon.storage.lmdb.environment import DB_NAMES, SEP, StoreFull, growing
from modelmon_daemon.storage.lmdb.labels import LabelsTable, PerformanceUpdate
from modelmon_daemon.storage.lmdb.log import LogTable, wal_key
from modelmon_daemon.storage.lmdb.windows import WindowCommit, WindowsTable, empty_state

__all__ = [
    "DB_NAMES",
    "SEP",
    "AlertsTable",
    "EndpointsTable",
    "LabelsTable",
    "LmdbStore",
    "LogTable",
    "Notifier",
    "PerformanceUpdate",
    "StoreFull",
    "WindowCommit",
    "WindowsTable",
    "empty_state",
    "growing",
    "wal_key",
]


class LmdbStore(EndpointsTable, WindowsTable):
    """Every table of the daemon over one LMDB environment."""
