"""WriterActor: persists closed windows: raw rows and results to Parquet, then one LMDB
transaction that makes them count (see LmdbStore.commit). Files of a commit that never
happened are deleted on start-up, so every acknowledged event lands exactly once."""

from __future__ import annotations

import logging
import time
from typing import Any

from modelmon_daemon.alerts.model import AlertConfig, AlertEvent, events_from_results
from modelmon_daemon.alerts.templates import load_templates, render
from modelmon_daemon.config import Settings
from modelmon_daemon.enums import ResultKind, ResultStatus
from modelmon_daemon.records import AppOutput, ColumnBatch, ResultRecord, WindowMeta, empty_batch
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
        notes = self.settings.notifications
        self.templates = load_templates(notes.templates or None)
        d = self.settings.daemon
        self.public_url = notes.public_url or f"http://{d.host}:{d.port}"

    def _notifications(self, alert: AlertConfig, event: AlertEvent) -> list[dict[str, Any]]:
        """One outbox entry per channel of a firing alert, its message rendered now."""
        message = render(alert, event, self.public_url, self.templates)
        return [{"channel": channel, **message} for channel in alert.notifications]

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
        files = self.parquet.events_files(meta, batch) if meta.rows else []
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
        result_dicts = [r.to_dict() for r in results]
        committed = self.store.commit(
            meta,
            paths,
            applications,
            result_dicts,
            updates,
            failures,
            project,
            alert_events=events_from_results(meta.uid, project, result_dicts, failures),
            notifier=self._notifications,
        )
        if committed:
            self.rows_written += meta.rows
            if meta.late:
                self.late_batches_written += 1
            else:
                self.windows_written += 1
        return committed

    def advance(
        self,
        uid: str,
        closed_through: float,
        applications: list[str],
        endpoint: dict[str, Any] | None = None,
        silence: float | None = None,
    ) -> None:
        """Move the frontier over empty windows. An endpoint without arrivals for
        operational.no_traffic_after gets a no_traffic result for the last of them."""
        after = self.settings.operational.no_traffic_after
        state = self.store.get_state(uid)
        closed = state["closed_through"]
        if (
            after
            and silence is not None
            and silence >= after
            and endpoint is not None
            and (closed is None or closed < closed_through)
        ):
            period = self.settings.windows.base_period
            meta = WindowMeta(uid, closed_through - period, closed_through, [], rows=0)
            record = ResultRecord(
                "operational-health",
                "no_traffic",
                "result",
                float(silence),
                meta.start,
                meta.end,
                ResultKind.system_performance,
                ResultStatus.detected,
                {"after_s": after, "silent_s": silence},
                0,
            )
            n_out = len(endpoint.get("label_names") or [])
            self.commit_window(
                meta,
                empty_batch(len(endpoint["feature_names"]), n_out),
                [AppOutput("operational-health", [record])],
                endpoint,
                applications,
            )
        self.store.advance_empty(uid, closed_through, applications)

    def counters(self) -> dict[str, int]:
        return {
            "windows_written": self.windows_written,
            "late_batches_written": self.late_batches_written,
            "rows_written": self.rows_written,
        }

    def ping(self) -> str:
        return "writer"
