"""WriterActor: persists closed windows: raw rows and results to Parquet, then one LMDB
transaction that makes them count (see LmdbStore.commit). Files of a commit that never
happened are deleted on start-up, so every acknowledged event lands exactly once."""

from __future__ import annotations

import logging
import time
from typing import Any

from modelmon_daemon.config import Settings
from modelmon_daemon.records import AppOutput, ColumnBatch, ResultRecord, WindowMeta
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.parquet_store import ParquetStore

log = logging.getLogger(__name__)


class WriterActor:
    def __init__(self, settings: dict[str, Any], store: LmdbStore | None = None) -> None:
        self.settings = Settings.from_dict(settings)
        data = self.settings.data_path
        self.store = store or LmdbStore(data, self.settings.storage.lmdb_map_size)
        self.parquet = ParquetStore(str(data))
        self.windows_written = 0
        self.late_batches_written = 0
        self.rows_written = 0
        for path in self.store.pending_files():
            self.parquet.delete(path)
            log.info("writer: removed %s, written by a commit that did not happen", path)
        self.store.clear_pending(self.store.pending_files())

    def commit_window(
        self,
        meta: WindowMeta,
        batch: ColumnBatch,
        outputs: list[AppOutput],
        endpoint: dict[str, Any],
        applications: list[str],
    ) -> bool:
        """Write a closed window (or a late batch) and commit it; False if it was already."""
        if self.store.window_committed(meta):
            return False
        files = self.parquet.events_files(meta, batch)
        results: list[ResultRecord] = [r for o in outputs for r in o.results]
        results_path = self.parquet.results_file(meta) if results else None
        paths = [p for p, _ in files] + ([results_path] if results_path else [])
        self.store.add_pending(paths)
        self.parquet.write_events(
            files, batch, list(endpoint["feature_names"]), list(endpoint.get("label_names") or [])
        )
        project = str(endpoint.get("project", ""))
        if results_path:
            self.parquet.write_results(results_path, results, project)
        updates: dict[str, Any] = {}
        for output in outputs:
            updates.update(output.endpoint_updates)
        failures = [
            {
                "kind": "mm-app-failed",
                "application": o.application,
                "message": o.failure,
                "start": meta.start,
                "end": meta.end,
                "time": time.time(),
            }
            for o in outputs
            if o.failure
        ]
        committed = self.store.commit(
            meta, paths, applications, [r.to_dict() for r in results], updates, failures, project
        )
        if committed:
            self.rows_written += meta.rows
            if meta.late:
                self.late_batches_written += 1
            else:
                self.windows_written += 1
        return committed

    def advance(self, uid: str, closed_through: float, applications: list[str]) -> None:
        self.store.advance_empty(uid, closed_through, applications)

    def counters(self) -> dict[str, int]:
        return {
            "windows_written": self.windows_written,
            "late_batches_written": self.late_batches_written,
            "rows_written": self.rows_written,
        }

    def ping(self) -> str:
        return "writer"
