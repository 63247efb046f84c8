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

import struct
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import lmdb

from modelmon_daemon.records import WindowMeta, pack, unpack

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
)
SEP = b"\x00"
_SEQ = struct.Struct(">Q")


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
    def __init__(self, data_dir: str | Path, map_size: int) -> None:
        path = Path(data_dir) / "lmdb"
        path.mkdir(parents=True, exist_ok=True)
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

    # -- meta ---------------------------------------------------------------------------

    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.env.begin(db=self.db["meta"]) as txn:
            raw = txn.get(key.encode())
        return default if raw is None else unpack(raw)

    def put_meta(self, key: str, value: Any) -> None:
        with self.env.begin(db=self.db["meta"], write=True) as txn:
            txn.put(key.encode(), pack(value))

    # -- endpoints ----------------------------------------------------------------------

    def put_endpoint(self, spec: dict[str, Any]) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])

    def get_endpoint(self, uid: str) -> dict[str, Any] | None:
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else unpack(raw)

    def list_endpoints(self) -> list[dict[str, Any]]:
        with self.env.begin(db=self.db["endpoints"]) as txn:
            return [unpack(v) for _, v in txn.cursor()]

    def get_state(self, uid: str) -> dict[str, Any]:
        with self.env.begin(db=self.db["state"]) as txn:
            raw = txn.get(uid.encode())
        state = empty_state()
        if raw is not None:
            state.update(unpack(raw))
        return state

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

    def put_route(self, uid: str, actor: str) -> None:
        with self.env.begin(db=self.db["routes"], write=True) as txn:
            txn.put(uid.encode(), actor.encode())

    def routes(self) -> dict[str, str]:
        with self.env.begin(db=self.db["routes"]) as txn:
            return {k.decode(): v.decode() for k, v in txn.cursor()}

    # -- durability log -----------------------------------------------------------------

    def wal_append(
        self,
        records: list[tuple[str, float, dict[str, Any]]],
        new_endpoints: Iterable[dict[str, Any]] = (),
    ) -> list[int]:
        """Log records (uid, window start, batch wire) in one durable transaction, with
        any endpoints first seen in them; returns each record's sequence number."""
        seqs: list[int] = []
        with self.env.begin(write=True) as txn:
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
        return seqs

    def wal_records(self, uid: str) -> Iterator[tuple[int, float, dict[str, Any]]]:
        prefix = uid.encode() + SEP
        with self.env.begin(db=self.db["wal"]) as txn:
            cur = txn.cursor()
            if not cur.set_range(prefix):
                return
            for key, value in cur:
                if not key.startswith(prefix) or len(key) != len(prefix) + 8:
                    if not key.startswith(prefix):
                        break
                    continue
                record = unpack(value)
                yield _SEQ.unpack(key[len(prefix) :])[0], record["w"], record["b"]

    def wal_size(self) -> int:
        with self.env.begin(db=self.db["wal"]) as txn:
            return int(txn.stat(self.db["wal"])["entries"])

    # -- pending files ------------------------------------------------------------------

    def add_pending(self, paths: list[str]) -> None:
        with self.env.begin(db=self.db["pending"], write=True) as txn:
            for p in paths:
                txn.put(p.encode(), b"1")

    def pending_files(self) -> list[str]:
        with self.env.begin(db=self.db["pending"]) as txn:
            return [k.decode() for k, _ in txn.cursor()]

    def clear_pending(self, paths: list[str]) -> None:
        with self.env.begin(db=self.db["pending"], write=True) as txn:
            for p in paths:
                txn.delete(p.encode())

    # -- commits ------------------------------------------------------------------------

    def window_committed(self, meta: WindowMeta) -> bool:
        state = self.get_state(meta.uid)
        if meta.late:
            with self.env.begin(db=self.db["wal"]) as txn:
                return all(txn.get(wal_key(meta.uid, s)) is None for s in meta.seqs)
        closed = state["closed_through"]
        return closed is not None and closed >= meta.end

    def commit(
        self,
        meta: WindowMeta,
        files: list[str],
        applications: list[str],
        results: list[dict[str, Any]],
        endpoint_updates: dict[str, Any],
        failures: list[dict[str, Any]],
        project: str,
    ) -> bool:
        """Make a written window (or late batch) count, atomically: drop its log records,
        advance the frontier and last_analyzed, store latest results, add counters, and
        forget its files' pending marks. Returns False (and changes nothing) if it was
        committed before."""
        uid = meta.uid
        with self.env.begin(write=True) as txn:
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
            state["events"] += meta.rows
            state["error_count"] += meta.error_events
            if meta.late:
                state["late_events"] += meta.rows
            else:
                state["closed_through"] = meta.end
                for app in applications:
                    txn.put(_k(uid, app), pack(meta.end), db=self.db["last_analyzed"])
            if meta.first_event is not None and (
                state["first_request"] is None or meta.first_event < state["first_request"]
            ):
                state["first_request"] = meta.first_event
            if meta.last_event is not None and (
                state["last_request"] is None or meta.last_event > state["last_request"]
            ):
                state["last_request"] = meta.last_event
            state.update(endpoint_updates)
            txn.put(uid.encode(), pack(state), db=self.db["state"])
            for result in results:
                full = f"{project}.{result['application']}.{result['type']}.{result['name']}"
                txn.put(_k(uid, full), pack({**result, "full_name": full}), db=self.db["latest"])
            for failure in failures:
                key = _k(uid, f"{meta.end:020.3f}", failure["application"])
                txn.put(key, pack(failure), db=self.db["app_events"])
            for path in files:
                txn.delete(path.encode(), db=self.db["pending"])
        return True

    def advance_empty(self, uid: str, through: float, applications: list[str]) -> None:
        """An empty window produces no result but moves the frontier."""
        with self.env.begin(write=True) as txn:
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
