"""Window commits and per-endpoint state: `state` (drift fields, committed counters,
the closed-window frontier), `last_analyzed` (endpoint, application), `latest` (the
latest value of each result) and `app_events` (application failures). A commit makes a
written window count in one transaction: log records dropped, frontier moved, results,
labels joined, alerts evaluated and notifications queued."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from modelmon_daemon.alerts.model import AlertEvent
from modelmon_daemon.core.records import WindowMeta, pack, result_full_name, unpack
from modelmon_daemon.storage.lmdb.alerts import AlertsTable, Notifier
from modelmon_daemon.storage.lmdb.environment import compound_key, growing
from modelmon_daemon.storage.lmdb.labels import LabelsTable, PerformanceUpdate
from modelmon_daemon.storage.lmdb.log import LogTable, wal_key


@dataclass
class WindowCommit:
    """Everything one window's (or late batch's) commit changes."""

    meta: WindowMeta
    files: list[str]
    applications: list[str]
    results: list[dict[str, Any]]
    endpoint_updates: dict[str, Any]
    failures: list[dict[str, Any]]
    project: str
    alert_events: list[AlertEvent] = field(default_factory=list)
    performance: PerformanceUpdate | None = None


def empty_state() -> dict[str, Any]:
    return {
        "closed_through": None,
        "events": 0,
        "error_count": 0,
        "late_events": 0,
        "first_request": None,
        "last_request": None,
        "drift_measures": {},
        "drift_status": None,
        "current_stats": {},
    }


class WindowsTable(LogTable, AlertsTable, LabelsTable):
    @growing
    def get_state(self, uid: str) -> dict[str, Any]:
        with self.env.begin(db=self.db["state"]) as txn:
            raw = txn.get(uid.encode())
        state = empty_state()
        if raw is not None:
            state.update(unpack(raw))
        return state

    def get_last_analyzed(self, uid: str) -> dict[str, float]:
        return dict(self.prefixed_items("last_analyzed", uid))

    def latest_results(self, uid: str) -> list[dict[str, Any]]:
        return [value for _, value in self.prefixed_items("latest", uid)]

    def app_failures(self, uid: str) -> list[dict[str, Any]]:
        return [value for _, value in self.prefixed_items("app_events", uid)]

    @growing
    def window_committed(self, meta: WindowMeta) -> bool:
        state = self.get_state(meta.uid)
        if meta.late:
            with self.env.begin(db=self.db["wal"]) as txn:
                return all(txn.get(wal_key(meta.uid, s)) is None for s in meta.seqs)
        closed = state["closed_through"]
        return closed is not None and closed >= meta.end

    @growing
    def commit(
        self,
        meta: WindowMeta,
        files: list[str],
        applications: list[str],
        results: list[dict[str, Any]],
        endpoint_updates: dict[str, Any],
        failures: list[dict[str, Any]],
        project: str,
        alert_events: list[AlertEvent] | None = None,
        notifier: Notifier | None = None,
        performance: PerformanceUpdate | None = None,
    ) -> bool:
        """Make a written window (or late batch) count, atomically: drop its log records,
        advance the frontier and last_analyzed, store latest results, add counters, and
        forget its files' pending marks. Returns False (and changes nothing) if it was
        committed before."""
        commit = WindowCommit(
            meta,
            files,
            applications,
            results,
            endpoint_updates,
            failures,
            project,
            alert_events or [],
            performance,
        )
        with self.env.begin(write=True) as txn:
            return self._commit_in(txn, commit, notifier)

    @growing
    def commit_many(
        self,
        commits: list[WindowCommit],
        advances: list[tuple[str, float, list[str]]],
        notifier: Notifier | None = None,
    ) -> list[bool]:
        """Several windows (of different endpoints, or of one in order) and frontier
        moves in one durable transaction: one fsync for a whole tick."""
        states: dict[str, dict[str, Any]] = {}  # as this transaction wrote them
        with self.env.begin(write=True) as txn:
            done = [self._commit_in(txn, c, notifier, states) for c in commits]
            for uid, through, applications in advances:
                self._advance_in(txn, uid, through, applications, states)
        return done

    def _state_in(
        self, txn: Any, uid: str, states: dict[str, dict[str, Any]] | None
    ) -> dict[str, Any]:
        """An endpoint's state in a write transaction: as the transaction last wrote it
        (`states`, so a tick does not unpack again what it packed), else as stored."""
        if states is not None and uid in states:
            return states[uid]
        raw = txn.get(uid.encode(), db=self.db["state"])
        state = empty_state()
        if raw is not None:
            state.update(unpack(raw))
        return state

    def _commit_in(
        self,
        txn: Any,
        c: WindowCommit,
        notifier: Notifier | None,
        states: dict[str, dict[str, Any]] | None = None,
    ) -> bool:
        meta = c.meta
        uid = meta.uid
        state = self._state_in(txn, uid, states)
        wal = self.db["wal"]
        if meta.late:
            if all(txn.get(wal_key(uid, s), db=wal) is None for s in meta.seqs):
                return False
        elif state["closed_through"] is not None and state["closed_through"] >= meta.end:
            return False
        for seq in meta.seqs:
            txn.delete(wal_key(uid, seq), db=wal)
        self._add_wal_rows(txn, -meta.rows)
        state["events"] += meta.rows
        state["error_count"] += meta.error_events
        if meta.late:
            state["late_events"] += meta.rows
        else:
            state["closed_through"] = meta.end
            end = pack(meta.end)
            for app in c.applications:
                txn.put(compound_key(uid, app), end, db=self.db["last_analyzed"])
        if meta.first_event is not None and (
            state["first_request"] is None or meta.first_event < state["first_request"]
        ):
            state["first_request"] = meta.first_event
        if meta.last_event is not None and (
            state["last_request"] is None or meta.last_event > state["last_request"]
        ):
            state["last_request"] = meta.last_event
        state.update(c.endpoint_updates)
        if c.performance is not None and c.performance.inferred_model_type:
            state["inferred_model_type"] = c.performance.inferred_model_type
        txn.put(uid.encode(), pack(state), db=self.db["state"])
        if states is not None:
            states[uid] = state
        prefix = compound_key(uid, "")  # == compound_key(uid, full) without `full`
        for result in c.results:
            full = result_full_name(c.project, result)
            txn.put(
                prefix + full.encode(), pack({**result, "full_name": full}), db=self.db["latest"]
            )
        for failure in c.failures:
            key = compound_key(uid, f"{meta.end:020.3f}", failure["application"])
            txn.put(key, pack(failure), db=self.db["app_events"])
        for path in c.files:
            txn.delete(path.encode(), db=self.db["pending"])
        if c.performance is not None:
            self._apply_performance(txn, uid, c.performance)
        if c.alert_events and notifier is not None:
            self._apply_alerts(txn, c.alert_events, notifier, time.time())
        return True

    @growing
    def advance_empty(self, uid: str, through: float, applications: list[str]) -> None:
        """An empty window produces no result but moves the frontier."""
        with self.env.begin(write=True) as txn:
            self._advance_in(txn, uid, through, applications)

    def _advance_in(
        self,
        txn: Any,
        uid: str,
        through: float,
        applications: list[str],
        states: dict[str, dict[str, Any]] | None = None,
    ) -> None:
        state = self._state_in(txn, uid, states)
        if state["closed_through"] is not None and state["closed_through"] >= through:
            return
        state["closed_through"] = through
        txn.put(uid.encode(), pack(state), db=self.db["state"])
        if states is not None:
            states[uid] = state
        for app in applications:
            txn.put(compound_key(uid, app), pack(through), db=self.db["last_analyzed"])
