"""StreamActor: buffers one or more endpoints' events into windows (see windows.py) and
hands closed windows to the controller. On (re)start, on whatever node, it rebuilds its
buffers from the durability log of the log owner, so a crash loses nothing that was
acknowledged."""

from __future__ import annotations

import logging
import time
from typing import Any

from modelmon_daemon.actors import ray_metrics
from modelmon_daemon.analytics.opsmetrics import ArrivalRing, CumulativeHistogram
from modelmon_daemon.config import Settings, stream_row_budget
from modelmon_daemon.core.records import ColumnBatch, WindowMeta, from_log_value
from modelmon_daemon.core.windows import EndpointWindows
from modelmon_daemon.storage.log_view import LogView

log = logging.getLogger(__name__)


class StreamActor:
    def __init__(self, name: str, settings: dict[str, Any], store: LogView | None = None) -> None:
        """`store`: the log owner's state; by default the writer actor's, over Ray, so
        this actor holds no LMDB handle and may run on any node."""
        self.name = name
        self.settings = Settings.from_dict(settings)
        if store is None:
            from modelmon_daemon.actors.remote import LogOwnerClient

            store = LogOwnerClient()
        self.store = store
        self.windows: dict[str, EndpointWindows] = {}
        self.rings: dict[str, ArrivalRing] = {}
        # since this actor started: Prometheus counters (PromQL handles the reset)
        self.latency: dict[str, CumulativeHistogram] = {}
        self.predictions: dict[str, float] = {}
        self.committed: dict[str, dict[str, Any]] = {}
        self.started = time.time()
        # resolved by the controller that made this actor; alone, the smallest share
        self.max_held = stream_row_budget(self.settings, self.settings.stream.max_actors)
        self.held_estimate = 0  # rows taken since memory was last counted exactly
        self.spilled_rows = 0
        self.ray_rows = ray_metrics.counter(
            "modelmon_stream_rows", "Rows buffered by stream actors.", ("actor",)
        )
        for uid, actor in self.store.routes().items():
            if actor == name:
                self.add_endpoint(uid)

    def add_endpoint(self, uid: str) -> bool:
        """Take an endpoint (idempotent): its committed state, then its logged events."""
        if uid in self.windows:
            return False
        spec = self.store.get_endpoint(uid)
        if spec is None:
            raise KeyError(f"endpoint {uid} is not registered")
        state = self.store.get_state(uid)
        w = self.settings.windows
        n_outputs = len(spec.get("label_names") or [])
        self.windows[uid] = EndpointWindows(
            uid,
            len(spec["feature_names"]),
            n_outputs,
            w.base_period,
            w.allowed_lateness,
            closed_through=state["closed_through"],
            read_log=lambda seqs: [
                ColumnBatch.from_wire(w) for w in self.store.wal_batches(uid, seqs)
            ],
        )
        self.rings[uid] = ArrivalRing()
        self.latency[uid] = CumulativeHistogram()
        self.predictions[uid] = 0.0
        self.committed[uid] = state
        now = time.time()
        replayed = 0
        for seq, start, wire in self.store.wal_records(uid):
            batch = ColumnBatch.from_wire(wire)
            if self.windows[uid].add(seq, start, batch, arrival=now):
                replayed += 1
                # logged before this actor had the endpoint (it was being made, or it
                # crashed): its live counts take them at their event time
                when = min(now, float(batch.timestamps.max())) if len(batch) else now
                self._count(uid, when, batch)
        if replayed:
            log.info("stream %s: endpoint %s replayed %d logged records", self.name, uid, replayed)
        self.bound_memory(force=True)
        return True

    def _count(self, uid: str, arrival: float, batch: ColumnBatch) -> None:
        self.rings[uid].add(arrival, batch.predictions(), batch.latency_us)
        self.latency[uid].observe(batch.latency_us * 1e-6)
        self.predictions[uid] += batch.predictions()

    def remove_endpoint(self, uid: str) -> bool:
        """Drop an endpoint's buffers (it was deleted): nothing of it is analyzed again."""
        self.rings.pop(uid, None)
        self.latency.pop(uid, None)
        self.predictions.pop(uid, None)
        self.committed.pop(uid, None)
        return self.windows.pop(uid, None) is not None

    def ingest(
        self, records: list[tuple[str, int, float, ColumnBatch | bytes]], arrival: float
    ) -> int:
        """Buffer logged records (uid, seq, window start, rows: a batch, or the bytes the
        log stores); returns rows taken."""
        taken = 0
        for uid, seq, start, rows in records:
            if isinstance(rows, bytes):
                start, wire = from_log_value(rows)
                batch = ColumnBatch.from_wire(wire)
            else:
                batch = rows
            if uid not in self.windows:
                self.add_endpoint(uid)
            if self.windows[uid].add(seq, start, batch, arrival):
                self._count(uid, arrival, batch)
                taken += len(batch)
        if taken:
            self.ray_rows.inc(taken, tags={"actor": self.name})
            self.held_estimate += taken
            self.bound_memory()
        return taken

    def ingest_many(
        self, groups: list[tuple[list[tuple[str, int, float, ColumnBatch | bytes]], float]]
    ) -> int:
        """Several forwards in one call, each with its own arrival time, in order."""
        return sum(self.ingest(records, arrival) for records, arrival in groups)

    def held_rows(self) -> int:
        return sum(w.held_rows() for w in self.windows.values())

    def bound_memory(self, force: bool = False) -> int:
        """Keep the rows held in memory under stream.max_buffered_rows: past it, spill the
        endpoints holding most (oldest windows first) down to half the budget. Counting is
        exact but only done once the rows taken since the last count could exceed it."""
        if not force and self.held_estimate <= self.max_held:
            return 0
        held = {uid: w.held_rows() for uid, w in self.windows.items()}
        total = sum(held.values())
        freed = 0
        if total > self.max_held:
            need = total - self.max_held // 2
            for uid in sorted(held, key=held.__getitem__, reverse=True):
                if freed >= need:
                    break
                freed += self.windows[uid].spill(need - freed)
            self.spilled_rows += freed
        self.held_estimate = total - freed
        return freed

    def collect(
        self, now: float | None = None
    ) -> list[tuple[str, list[WindowMeta], float | None, float | None]]:
        """Per endpoint: windows awaiting commit, the closed-window frontier and the
        wall-clock time of the last arrival."""
        now = time.time() if now is None else now
        out = []
        for uid, windows in self.windows.items():
            metas = windows.close(now)
            if metas or windows.closed_through != self.committed[uid].get("closed_through"):
                out.append((uid, metas, windows.closed_through, windows.last_arrival))
        return out

    def window_data(self, uid: str, start: float, late: bool) -> ColumnBatch:
        return self.windows[uid].window_batch(start, late)

    def windows_data(
        self,
        keys: list[tuple[str, float, bool]],
        parts: list[int] | None = None,
        n_parts: int = 1,
    ) -> Any:
        """The data of many windows in one object (one call per tick). With `parts` (one
        per key: the application actor that analyzes it, -1 for none), `n_parts` lists
        (called with num_returns=n_parts), so each application actor receives only its
        own windows."""
        if parts is None:
            return [self.windows[uid].window_batch(start, late) for uid, start, late in keys]
        out: list[list[ColumnBatch]] = [[] for _ in range(n_parts)]
        for (uid, start, late), part in zip(keys, parts, strict=True):
            if part >= 0:
                out[part].append(self.windows[uid].window_batch(start, late))
        return out[0] if len(out) == 1 else tuple(out)

    def ack_many(
        self, keys: list[tuple[str, float, bool]], frontiers: list[tuple[str, float]]
    ) -> None:
        """Forget committed windows and note committed frontiers, one call per tick."""
        for uid, start, late in keys:
            if uid in self.windows:
                self.ack(uid, start, late)
        for uid, frontier in frontiers:
            if uid in self.committed:
                self.frontier_committed(uid, frontier)

    def ack(self, uid: str, start: float, late: bool) -> None:
        windows = self.windows[uid]
        pending = windows.pending.get((start, late))
        if pending is not None:
            meta = pending.meta
            state = self.committed[uid]
            state["events"] = state.get("events", 0) + meta.rows
            state["error_count"] = state.get("error_count", 0) + meta.error_events
            if meta.late:
                state["late_events"] = state.get("late_events", 0) + meta.rows
            for key, value, pick in (
                ("first_request", meta.first_event, min),
                ("last_request", meta.last_event, max),
            ):
                if value is not None:
                    state[key] = value if state.get(key) is None else pick(state[key], value)
        windows.ack(start, late)

    def frontier_committed(self, uid: str, closed_through: float) -> None:
        self.committed[uid]["closed_through"] = closed_through

    def operational(
        self, uids: list[str] | None = None, now: float | None = None
    ) -> dict[str, Any]:
        """Live operational metrics per endpoint: committed counters + buffered events."""
        now = time.time() if now is None else now
        out = {}
        for uid in uids if uids is not None else list(self.windows):
            if uid not in self.windows:
                continue
            state = self.committed[uid]
            buffered = self.windows[uid].buffered()
            firsts = [v for v in (state.get("first_request"), buffered["first"]) if v is not None]
            lasts = [v for v in (state.get("last_request"), buffered["last"]) if v is not None]
            out[uid] = {
                **self.rings[uid].snapshot(now),
                "error_count": int(state.get("error_count", 0)) + int(buffered["errors"] or 0),
                "late_events": int(state.get("late_events", 0)) + int(buffered["late"] or 0),
                "events_total": int(state.get("events", 0)) + int(buffered["rows"] or 0),
                "first_request": min(firsts) if firsts else None,
                "last_request": max(lasts) if lasts else None,
                "buffered_events": int(buffered["rows"] or 0),
                "open_windows": len(self.windows[uid].open),
                "held_events": self.windows[uid].held_rows(),
                "predictions_total": self.predictions[uid],
                "latency_seconds": self.latency[uid].to_dict(),
            }
        return out

    def endpoints(self) -> list[str]:
        return list(self.windows)

    def ping(self) -> str:
        return self.name

    def node_id(self) -> str:
        """The Ray node this actor runs on (placement shows in /v1/status)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())
