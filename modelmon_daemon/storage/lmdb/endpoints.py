"""Endpoint records (`endpoints`) and the route table (`routes`: endpoint -> stream
actor); deleting an endpoint forgets everything kept for it in one transaction."""

from __future__ import annotations

from typing import Any

from modelmon_daemon.core.records import pack, spec_version, unpack
from modelmon_daemon.storage.lmdb.environment import SEP, growing
from modelmon_daemon.storage.lmdb.log import LogTable


class EndpointsTable(LogTable):
    @growing
    def put_endpoint(self, spec: dict[str, Any]) -> None:
        with self.env.begin(write=True) as txn:
            txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])

    @growing
    def get_endpoint(self, uid: str) -> dict[str, Any] | None:
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else unpack(raw)

    @growing
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

    @growing
    def get_endpoint_raw(self, uid: str) -> bytes | None:
        """The stored record as bytes: its digest is the endpoint's version."""
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else bytes(raw)

    @growing
    def get_endpoints_raw(self, uids: list[str]) -> list[bytes | None]:
        """Many stored records in one transaction."""
        with self.env.begin(db=self.db["endpoints"]) as txn:
            raws = [txn.get(uid.encode()) for uid in uids]
        return [None if raw is None else bytes(raw) for raw in raws]

    @growing
    def get_endpoints_changed(
        self, uids: list[str], known: list[str | None]
    ) -> list[tuple[str, bytes | None] | None]:
        """Per endpoint (one call per tick): None if it is gone, else its version and its
        stored record, or None instead of the record where `known` has that version
        already (an unchanged fleet costs digests, not megabytes of reference stats)."""
        out: list[tuple[str, bytes | None] | None] = []
        with self.env.begin(db=self.db["endpoints"]) as txn:
            for uid, version in zip(uids, known, strict=True):
                raw = txn.get(uid.encode())
                if raw is None:
                    out.append(None)
                    continue
                current = spec_version(raw)
                out.append((current, None if current == version else bytes(raw)))
        return out

    @growing
    def list_endpoints(self) -> list[dict[str, Any]]:
        with self.env.begin(db=self.db["endpoints"]) as txn:
            return [unpack(v) for _, v in txn.cursor()]

    @growing
    def put_route(self, uid: str, actor: str) -> None:
        self.put_routes([(uid, actor)])

    @growing
    def put_routes(self, routes: list[tuple[str, str]]) -> None:
        """Many routes in one durable transaction (a burst of registrations)."""
        with self.env.begin(db=self.db["routes"], write=True) as txn:
            for uid, actor in routes:
                txn.put(uid.encode(), actor.encode())

    @growing
    def routes(self) -> dict[str, str]:
        with self.env.begin(db=self.db["routes"]) as txn:
            return {k.decode(): v.decode() for k, v in txn.cursor()}
