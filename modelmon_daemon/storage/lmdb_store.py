"""All LMDB state of the daemon, in one environment under `{data_dir}/lmdb`.

Named databases: `endpoints` (registrations), `state` (per-endpoint record: drift fields,
committed counters, closed-window frontier), `last_analyzed` (endpoint, application),
`latest` (latest value of each result), `routes` (endpoint -> stream actor), `wal` (the
durability log of accepted events, keyed endpoint + sequence), `pending` (Parquet files
being written, deleted on start-up if their commit never happened), `app_events`
(application failures) and `meta`.

Several processes open the same environment: LMDB serializes their write transactions,
so read-modify-write inside one write transaction is safe across processes.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lmdb

from modelmon_daemon.alerts.engine import Decision, evaluate, manual_reset
from modelmon_daemon.alerts.model import AlertConfig, AlertEvent
from modelmon_daemon.core.records import WindowMeta, pack, unpack

# (alert, the results that fired in one window of one endpoint) -> outbox entries, one
# per channel
Notifier = Callable[[AlertConfig, list[AlertEvent]], list[dict[str, Any]]]


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


@dataclass
class PerformanceUpdate:
    """What a window commit does to the label join: pairs it scored (deleted), rows
    whose label may still come (kept until expires), the detector's new state."""

    used_joined: list[str] = field(default_factory=list)
    used_labels: list[str] = field(default_factory=list)
    predictions: list[tuple[str, Any, float]] = field(default_factory=list)  # rid, output, ts
    detector: bytes | None = None
    expires: float = 0.0
    inferred_model_type: str = ""  # set when the endpoint had none: kept in its state


DB_NAMES = (
    "meta",
    "endpoints",
    "state",
    "last_analyzed",
    "latest",
    "routes",
    "wal",
    "pending",
    "app_events",
    "alerts",
    "alert_state",
    "alert_history",
    "outbox",
    "labels",
    "predictions",
    "joined",
    "detectors",
)
SEP = b"\x00"
_SEQ = struct.Struct(">Q")


class StoreFull(RuntimeError):
    """The map reached storage.lmdb_max_map_size: writes wait until commits free room."""


class _SharedExclusiveLock:
    """Transactions share it; a map resize takes it alone (LMDB requires that no
    transaction of this process is open while the map changes). Shared holders may nest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def _growing(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a store method under the shared lock; when the map is full, double it (up to
    the maximum) and run the method again (its transaction was aborted, so nothing
    happened); when another process grew it, adopt the new size and run it again."""

    @functools.wraps(method)
    def run(self: LmdbStore, *args: Any, **kwargs: Any) -> Any:
        if self._lock_depth.value:  # nested inside another guarded method
            return method(self, *args, **kwargs)
        for _ in range(64):
            grow_to = None
            with self._lock.shared():
                self._lock_depth.value = 1
                try:
                    return method(self, *args, **kwargs)
                except lmdb.MapResizedError:
                    grow_to = 0
                except lmdb.MapFullError:
                    grow_to = self._next_map_size()
                finally:
                    self._lock_depth.value = 0
            self._resize(grow_to)
        raise StoreFull("the LMDB map could not be resized")

    return run


class _Depth(threading.local):
    value = 0


def _k(*parts: str) -> bytes:
    return SEP.join(p.encode() for p in parts)


def wal_key(uid: str, seq: int) -> bytes:
    return uid.encode() + SEP + _SEQ.pack(seq)


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


class LmdbStore:
    """Every public method runs in its own transaction(s) under `_growing`: the map grows
    on demand, so a full map never wedges the daemon."""

    def __init__(self, data_dir: str | Path, map_size: int, max_map_size: int = 0) -> None:
        path = Path(data_dir) / "lmdb"
        path.mkdir(parents=True, exist_ok=True)
        self.max_map_size = max(max_map_size or 1024**4, map_size)
        self.full_since: float | None = None  # when a write last found no room (0 = never)
        self.grown = 0
        self._lock = _SharedExclusiveLock()
        self._lock_depth = _Depth()
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=len(DB_NAMES) + 4,
            max_readers=512,
            sync=True,
            metasync=True,
        )
        self.env.reader_check()
        self.db = {name: self.env.open_db(name.encode()) for name in DB_NAMES}

    def close(self) -> None:
        self.env.close()

    # -- map size -----------------------------------------------------------------------

    def _next_map_size(self) -> int:
        current = int(self.env.info()["map_size"])
        if current >= self.max_map_size:
            self.full_since = self.full_since or time.time()
            raise StoreFull(
                f"LMDB map is full at storage.lmdb_max_map_size ({self.max_map_size} bytes)"
            )
        return min(current * 2, self.max_map_size)

    def _resize(self, size: int) -> None:
        with self._lock.exclusive():
            if size == 0 or size > int(self.env.info()["map_size"]):
                self.env.set_mapsize(size)
                if size:
                    self.grown += 1
        self.full_since = None

    @_growing
    def usage(self) -> dict[str, Any]:
        """Map size, bytes in use (pages up to the last one written) and whether writes
        are refused for want of room."""
        info, stat = self.env.info(), self.env.stat()
        return {
            "map_size_bytes": int(info["map_size"]),
            "max_map_size_bytes": self.max_map_size,
            "used_bytes": int((info["last_pgno"] + 1) * stat["psize"]),
            "resizes": self.grown,
            "full": self.full_since is not None,
        }

    # -- meta ---------------------------------------------------------------------------

    @_growing
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.env.begin(db=self.db["meta"]) as txn:
            raw = txn.get(key.encode())
        return default if raw is None else unpack(raw)

    @_growing
    def put_meta(self, key: str, value: Any) -> None:
        with self.env.begin(db=self.db["meta"], write=True) as txn:
            txn.put(key.encode(), pack(value))

    # -- endpoints ----------------------------------------------------------------------

    @_growing
    def put_endpoint(self, spec: dict[str, Any]) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])

    @_growing
    def get_endpoint(self, uid: str) -> dict[str, Any] | None:
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else unpack(raw)

    @_growing
    def delete_endpoint(self, uid: str) -> int:
        """Forget an endpoint in one transaction: its record, state, routes, results kept
        here, label join and the log records of windows not yet committed. Returns how many
        logged rows were dropped with it (Parquet files are not touched here)."""
        key = uid.encode()
        prefix = key + SEP
        dropped = 0
        with self.env.begin(write=True) as txn:
            for db in ("endpoints", "state", "routes", "detectors"):
                txn.delete(key, db=self.db[db])
            txn.delete(b"labels:" + key, db=self.db["meta"])
            for db in ("last_analyzed", "latest", "app_events", "labels", "predictions", "joined"):
                for k in self._prefixed_keys(txn, db, uid):
                    txn.delete(k, db=self.db[db])
            cur = txn.cursor(db=self.db["wal"])
            doomed = []
            if cur.set_range(prefix):
                for k, value in cur:
                    if not k.startswith(prefix):
                        break
                    dropped += int(unpack(value)["b"]["n"])
                    doomed.append(bytes(k))
            for k in doomed:
                txn.delete(k, db=self.db["wal"])
            self._add_wal_rows(txn, -dropped)
        return dropped

    @_growing
    def get_endpoint_raw(self, uid: str) -> bytes | None:
        """The stored record as bytes: its digest is the endpoint's version."""
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else bytes(raw)

    @_growing
    def get_endpoints_raw(self, uids: list[str]) -> list[bytes | None]:
        """Many stored records in one transaction (one call per tick)."""
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raws = [txn.get(uid.encode()) for uid in uids]
        return [None if raw is None else bytes(raw) for raw in raws]

    @_growing
    def list_endpoints(self) -> list[dict[str, Any]]:
        with self.env.begin(db=self.db["endpoints"]) as txn:
            return [unpack(v) for _, v in txn.cursor()]

    @_growing
    def get_state(self, uid: str) -> dict[str, Any]:
        with self.env.begin(db=self.db["state"]) as txn:
            raw = txn.get(uid.encode())
        state = empty_state()
        if raw is not None:
            state.update(unpack(raw))
        return state

    @_growing
    def get_last_analyzed(self, uid: str) -> dict[str, float]:
        prefix = uid.encode() + SEP
        out: dict[str, float] = {}
        with self.env.begin(db=self.db["last_analyzed"]) as txn:
            cur = txn.cursor()
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    out[key[len(prefix) :].decode()] = unpack(value)
        return out

    @_growing
    def latest_results(self, uid: str) -> list[dict[str, Any]]:
        prefix = uid.encode() + SEP
        out = []
        with self.env.begin(db=self.db["latest"]) as txn:
            cur = txn.cursor()
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    out.append(unpack(value))
        return out

    @_growing
    def app_failures(self, uid: str) -> list[dict[str, Any]]:
        prefix = uid.encode() + SEP
        out = []
        with self.env.begin(db=self.db["app_events"]) as txn:
            cur = txn.cursor()
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    out.append(unpack(value))
        return out

    # -- routes -------------------------------------------------------------------------

    @_growing
    def put_route(self, uid: str, actor: str) -> None:
        self.put_routes([(uid, actor)])

    @_growing
    def put_routes(self, routes: list[tuple[str, str]]) -> None:
        """Many routes in one durable transaction (a burst of registrations)."""
        with self.env.begin(db=self.db["routes"], write=True) as txn:
            for uid, actor in routes:
                txn.put(uid.encode(), actor.encode())

    @_growing
    def routes(self) -> dict[str, str]:
        with self.env.begin(db=self.db["routes"]) as txn:
            return {k.decode(): v.decode() for k, v in txn.cursor()}

    # -- durability log -----------------------------------------------------------------

    @_growing
    def wal_append(
        self,
        records: list[tuple[str, float, dict[str, Any]]],
        new_endpoints: Iterable[dict[str, Any]] = (),
        registered: Iterable[dict[str, Any]] = (),
    ) -> list[int]:
        """Log records (uid, window start, batch wire) in one durable transaction, with
        any endpoints first seen in them and endpoint records registered meanwhile (which
        replace stored ones); returns each record's sequence number."""
        seqs: list[int] = []
        with self.env.begin(write=True) as txn:
            for spec in registered:
                txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])
            for spec in new_endpoints:
                if txn.get(spec["uid"].encode(), db=self.db["endpoints"]) is None:
                    txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])
            raw = txn.get(b"seq", db=self.db["meta"])
            seq = 0 if raw is None else unpack(raw)
            for uid, start, wire in records:
                seq += 1
                txn.put(wal_key(uid, seq), pack({"w": start, "b": wire}), db=self.db["wal"])
                seqs.append(seq)
            txn.put(b"seq", pack(seq), db=self.db["meta"])
            self._add_wal_rows(txn, sum(int(wire["n"]) for _, _, wire in records))
        self.full_since = None  # there was room after all (commits freed pages)
        return seqs

    def _add_wal_rows(self, txn: Any, n: int) -> None:
        raw = txn.get(b"wal_rows", db=self.db["meta"])
        total = max(0, (0 if raw is None else int(unpack(raw))) + n)
        txn.put(b"wal_rows", pack(total), db=self.db["meta"])

    @_growing
    def wal_rows(self) -> int:
        """Rows acknowledged and logged whose window is not committed yet."""
        with self.env.begin(db=self.db["meta"]) as txn:
            raw = txn.get(b"wal_rows")
        return 0 if raw is None else int(unpack(raw))

    @_growing
    def wal_records(self, uid: str) -> list[tuple[int, float, dict[str, Any]]]:
        prefix = uid.encode() + SEP
        out: list[tuple[int, float, dict[str, Any]]] = []
        with self.env.begin(db=self.db["wal"]) as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return out
            for key, value in cur:
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    if not key.startswith(prefix):
                        break
                    continue
                record = unpack(value)
                out.append((_SEQ.unpack(key[len(prefix) :])[0], record["w"], record["b"]))
        return out

    @_growing
    def wal_batches(self, uid: str, seqs: list[int]) -> list[dict[str, Any]]:
        """The batch wires of logged records, in the order asked (a spilled window's rows
        are read back from here)."""
        out = []
        with self.env.begin(db=self.db["wal"]) as txn:
            for seq in seqs:
                raw = txn.get(wal_key(uid, seq))
                if raw is None:
                    raise KeyError(f"logged record {seq} of {uid} is gone")
                out.append(unpack(raw)["b"])
        return out

    @_growing
    def wal_size(self) -> int:
        with self.env.begin(db=self.db["wal"]) as txn:
            return int(txn.stat(self.db["wal"])["entries"])

    # -- pending files ------------------------------------------------------------------

    @_growing
    def add_pending(self, paths: list[str]) -> None:
        with self.env.begin(db=self.db["pending"], write=True) as txn:
            for p in paths:
                txn.put(p.encode(), b"1")

    @_growing
    def pending_files(self) -> list[str]:
        with self.env.begin(db=self.db["pending"]) as txn:
            return [k.decode() for k, _ in txn.cursor()]

    @_growing
    def clear_pending(self, paths: list[str]) -> None:
        with self.env.begin(db=self.db["pending"], write=True) as txn:
            for p in paths:
                txn.delete(p.encode())

    # -- commits ------------------------------------------------------------------------

    @_growing
    def window_committed(self, meta: WindowMeta) -> bool:
        state = self.get_state(meta.uid)
        if meta.late:
            with self.env.begin(db=self.db["wal"]) as txn:
                return all(txn.get(wal_key(meta.uid, s)) is None for s in meta.seqs)
        closed = state["closed_through"]
        return closed is not None and closed >= meta.end

    @_growing
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

    @_growing
    def commit_many(
        self,
        commits: list[WindowCommit],
        advances: list[tuple[str, float, list[str]]],
        notifier: Notifier | None = None,
    ) -> list[bool]:
        """Several windows (of different endpoints, or of one in order) and frontier
        moves in one durable transaction: one fsync for a whole tick."""
        with self.env.begin(write=True) as txn:
            done = [self._commit_in(txn, c, notifier) for c in commits]
            for uid, through, applications in advances:
                self._advance_in(txn, uid, through, applications)
        return done

    def _commit_in(self, txn: Any, c: WindowCommit, notifier: Notifier | None) -> bool:
        meta = c.meta
        uid = meta.uid
        raw = txn.get(uid.encode(), db=self.db["state"])
        state = empty_state()
        if raw is not None:
            state.update(unpack(raw))
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
            for app in c.applications:
                txn.put(_k(uid, app), pack(meta.end), db=self.db["last_analyzed"])
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
        for result in c.results:
            full = f"{c.project}.{result['application']}.{result['type']}.{result['name']}"
            txn.put(_k(uid, full), pack({**result, "full_name": full}), db=self.db["latest"])
        for failure in c.failures:
            key = _k(uid, f"{meta.end:020.3f}", failure["application"])
            txn.put(key, pack(failure), db=self.db["app_events"])
        for path in c.files:
            txn.delete(path.encode(), db=self.db["pending"])
        if c.performance is not None:
            self._apply_performance(txn, uid, c.performance)
        if c.alert_events and notifier is not None:
            self._apply_alerts(txn, c.alert_events, notifier, time.time())
        return True

    @_growing
    def advance_empty(self, uid: str, through: float, applications: list[str]) -> None:
        """An empty window produces no result but moves the frontier."""
        with self.env.begin(write=True) as txn:
            self._advance_in(txn, uid, through, applications)

    def _advance_in(self, txn: Any, uid: str, through: float, applications: list[str]) -> None:
        raw = txn.get(uid.encode(), db=self.db["state"])
        state = empty_state()
        if raw is not None:
            state.update(unpack(raw))
        if state["closed_through"] is not None and state["closed_through"] >= through:
            return
        state["closed_through"] = through
        txn.put(uid.encode(), pack(state), db=self.db["state"])
        for app in applications:
            txn.put(_k(uid, app), pack(through), db=self.db["last_analyzed"])

    # -- alerts -------------------------------------------------------------------------

    @_growing
    def put_alert(self, alert: AlertConfig) -> None:
        with self.env.begin(db=self.db["alerts"], write=True) as txn:
            txn.put(alert.name.encode(), pack(alert.to_dict()))

    @_growing
    def get_alert(self, name: str) -> AlertConfig | None:
        with self.env.begin(db=self.db["alerts"]) as txn:
            raw = txn.get(name.encode())
        return None if raw is None else AlertConfig.from_dict(unpack(raw))

    @_growing
    def list_alerts(self) -> list[AlertConfig]:
        with self.env.begin(db=self.db["alerts"]) as txn:
            return [AlertConfig.from_dict(unpack(v)) for _, v in txn.cursor()]

    @_growing
    def delete_alert(self, name: str) -> bool:
        with self.env.begin(write=True) as txn:
            found = txn.delete(name.encode(), db=self.db["alerts"])
            for key in self._prefixed_keys(txn, "alert_state", name):
                txn.delete(key, db=self.db["alert_state"])
        return bool(found)

    def _prefixed_keys(self, txn: Any, db: str, name: str) -> list[bytes]:
        prefix = name.encode() + SEP
        keys = []
        cur = txn.cursor(db=self.db[db])
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                keys.append(bytes(key))
        return keys

    @_growing
    def alert_states(self, name: str) -> dict[str, dict[str, Any]]:
        with self.env.begin() as txn:
            out = {}
            for key in self._prefixed_keys(txn, "alert_state", name):
                entity = key.split(SEP, 1)[1].decode()
                out[entity] = unpack(bytes(txn.get(key, db=self.db["alert_state"]) or b""))
            return out

    @_growing
    def alert_history(self, name: str, limit: int = 1000) -> list[dict[str, Any]]:
        with self.env.begin() as txn:
            keys = self._prefixed_keys(txn, "alert_history", name)[-limit:]
            return [unpack(bytes(txn.get(k, db=self.db["alert_history"]) or b"")) for k in keys]

    def _history(self, txn: Any, name: str, record: dict[str, Any]) -> None:
        raw = txn.get(b"history_seq", db=self.db["meta"])
        seq = (0 if raw is None else unpack(raw)) + 1
        txn.put(b"history_seq", pack(seq), db=self.db["meta"])
        key = _k(name, f"{record['time']:020.6f}", f"{seq:012d}")
        txn.put(key, pack({**record, "alert": name}), db=self.db["alert_history"])

    def _apply_alerts(
        self, txn: Any, events: list[AlertEvent], notifier: Notifier, now: float
    ) -> None:
        """Per (alert, endpoint): one decision for the window's events, at most one
        notification per channel listing every result that fired."""
        alerts = [AlertConfig.from_dict(unpack(v)) for _, v in txn.cursor(db=self.db["alerts"])]
        by_endpoint: dict[str, list[AlertEvent]] = {}
        for event in events:
            by_endpoint.setdefault(event.endpoint_id, []).append(event)
        for alert in alerts:
            for uid, endpoint_events in by_endpoint.items():
                matched = [e for e in endpoint_events if alert.matches_entity(e.entity)]
                if not matched:
                    continue
                key = _k(alert.name, uid)
                raw = txn.get(key, db=self.db["alert_state"])
                decision: Decision = evaluate(
                    alert, {} if raw is None else unpack(raw), matched, now
                )
                txn.put(key, pack(decision.state), db=self.db["alert_state"])
                for record in decision.history:
                    self._history(txn, alert.name, record)
                if decision.notify:
                    for entry in notifier(alert, decision.fired):
                        self._outbox_put(txn, {**entry, "alert": alert.name, "entity": uid})

    @_growing
    def reset_alert(self, name: str, entity: str | None = None) -> int:
        """Manual reset of every entity of an alert (or one); returns how many were active."""
        now = time.time()
        n = 0
        with self.env.begin(write=True) as txn:
            for key in self._prefixed_keys(txn, "alert_state", name):
                ent = key.split(SEP, 1)[1].decode()
                if entity is not None and ent != entity and not entity.startswith(ent + "."):
                    continue  # an endpoint uid, or one of its result entities
                raw = bytes(txn.get(key, db=self.db["alert_state"]) or b"")
                state, was_active = manual_reset(unpack(raw))
                txn.put(key, pack(state), db=self.db["alert_state"])
                if was_active:
                    n += 1
                    self._history(
                        txn, name, {"time": now, "entity": ent, "action": "reset", "by": "manual"}
                    )
        return n

    # -- outbox -------------------------------------------------------------------------

    def _outbox_put(self, txn: Any, entry: dict[str, Any]) -> None:
        raw = txn.get(b"outbox_seq", db=self.db["meta"])
        seq = (0 if raw is None else unpack(raw)) + 1
        txn.put(b"outbox_seq", pack(seq), db=self.db["meta"])
        entry = {"attempts": 0, "next_at": 0.0, "created": time.time(), **entry, "seq": seq}
        txn.put(_SEQ.pack(seq), pack(entry), db=self.db["outbox"])

    @_growing
    def outbox(self) -> list[dict[str, Any]]:
        with self.env.begin(db=self.db["outbox"]) as txn:
            return [unpack(v) for _, v in txn.cursor()]

    @_growing
    def outbox_retry(self, entry: dict[str, Any], error: str, next_at: float) -> None:
        with self.env.begin(write=True) as txn:
            updated = {
                **entry,
                "attempts": entry["attempts"] + 1,
                "next_at": next_at,
                "last_error": error,
            }
            txn.put(_SEQ.pack(entry["seq"]), pack(updated), db=self.db["outbox"])
            self._history(
                txn,
                entry["alert"],
                {
                    "time": time.time(),
                    "entity": entry["entity"],
                    "action": "delivery_failed",
                    "channel": entry["channel"]["kind"],
                    "attempt": entry["attempts"] + 1,
                    "error": error,
                    "retry_at": next_at,
                },
            )

    @_growing
    def outbox_done(self, entry: dict[str, Any], delivered: bool, error: str = "") -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(_SEQ.pack(entry["seq"]), db=self.db["outbox"])
            self._history(
                txn,
                entry["alert"],
                {
                    "time": time.time(),
                    "entity": entry["entity"],
                    "action": "delivered" if delivered else "gave_up",
                    "channel": entry["channel"]["kind"],
                    "attempts": entry["attempts"] + 1,
                    **({"error": error} if error else {}),
                },
            )

    # -- labels and the prediction join ---------------------------------------------------

    @_growing
    def log_labels(self, uid: str, pairs: list[tuple[str, Any]], now: float) -> int:
        """Durably store labels; a label whose prediction is already committed is joined at
        once. Returns how many were joined now."""
        joined = 0
        with self.env.begin(write=True) as txn:
            txn.put(b"labels:" + uid.encode(), b"1", db=self.db["meta"])
            for rid, label in pairs:
                key = _k(uid, rid)
                raw = txn.get(key, db=self.db["predictions"])
                if raw is not None:
                    pred = unpack(raw)
                    txn.put(
                        key,
                        pack({"label": label, "output": pred["output"], "ts": pred["ts"]}),
                        db=self.db["joined"],
                    )
                    txn.delete(key, db=self.db["predictions"])
                    joined += 1
                else:
                    txn.put(
                        key,
                        pack({"label": label, "expires": now + self._label_ttl(txn)}),
                        db=self.db["labels"],
                    )
        return joined

    @_growing
    def has_labels(self, uid: str) -> bool:
        """Whether labels were ever posted for the endpoint."""
        with self.env.begin(db=self.db["meta"]) as txn:
            return txn.get(b"labels:" + uid.encode()) is not None

    def _label_ttl(self, txn: Any) -> float:
        raw = txn.get(b"label_ttl", db=self.db["meta"])
        return 3600.0 if raw is None else float(unpack(raw))

    @_growing
    def performance_inputs(
        self, uid: str, request_ids: list[str]
    ) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
        """(pairs joined and not yet scored, labels waiting for these request ids)."""
        prefix = uid.encode() + SEP
        joined: dict[str, dict[str, Any]] = {}
        waiting: dict[str, Any] = {}
        with self.env.begin() as txn:
            cur = txn.cursor(db=self.db["joined"])
            if cur.set_range(prefix):
                for key, value in cur:
                    if not key.startswith(prefix):
                        break
                    joined[key[len(prefix) :].decode()] = unpack(value)
            labels = self.db["labels"]
            for rid in request_ids:
                raw = txn.get(_k(uid, rid), db=labels)
                if raw is not None:
                    waiting[rid] = unpack(raw)["label"]
        return joined, waiting

    @_growing
    def get_detector(self, uid: str) -> bytes | None:
        with self.env.begin(db=self.db["detectors"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else bytes(raw)

    def _apply_performance(self, txn: Any, uid: str, update: PerformanceUpdate) -> None:
        for rid in update.used_joined:
            txn.delete(_k(uid, rid), db=self.db["joined"])
        for rid in update.used_labels:
            txn.delete(_k(uid, rid), db=self.db["labels"])
        for rid, output, ts in update.predictions:
            key = _k(uid, rid)
            raw = txn.get(key, db=self.db["labels"])
            if raw is not None:  # the label came while this window was being written
                txn.put(
                    key,
                    pack({"label": unpack(raw)["label"], "output": output, "ts": ts}),
                    db=self.db["joined"],
                )
                txn.delete(key, db=self.db["labels"])
            else:
                txn.put(
                    key,
                    pack({"output": output, "ts": ts, "expires": update.expires}),
                    db=self.db["predictions"],
                )
        if update.detector is not None:
            txn.put(uid.encode(), update.detector, db=self.db["detectors"])
        now = time.time()
        for db in ("predictions", "labels"):  # past label_ttl: nothing will join them
            for key in self._prefixed_keys(txn, db, uid):
                raw = txn.get(key, db=self.db[db])
                if raw is not None and unpack(raw).get("expires", now + 1) < now:
                    txn.delete(key, db=self.db[db])
