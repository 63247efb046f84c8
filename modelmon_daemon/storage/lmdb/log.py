"""The durability log (`wal`: accepted events keyed endpoint + sequence, until their
window is committed; `meta` keeps the sequence and the row count) and the `pending`
table (Parquet files being written, deleted on start-up if their commit never happened).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from modelmon_daemon.core.records import from_log_value, log_value, pack, unpack
from modelmon_daemon.storage.lmdb.environment import SEP, SEQ, LmdbEnvironment, growing


def wal_key(uid: str, seq: int) -> bytes:
    return uid.encode() + SEP + SEQ.pack(seq)


class LogTable(LmdbEnvironment):
    def wal_append(
        self,
        records: list[tuple[str, float, dict[str, Any]]],
        new_endpoints: Iterable[dict[str, Any]] = (),
        registered: Iterable[dict[str, Any]] = (),
    ) -> list[int]:
        """Log records (uid, window start, batch wire) in one durable transaction, with
        any endpoints first seen in them and endpoint records registered meanwhile (which
        replace stored ones); returns each record's sequence number."""
        return self.wal_append_values(records, new_endpoints, registered)[0]

    @growing
    def wal_append_values(
        self,
        records: list[tuple[str, float, dict[str, Any]]],
        new_endpoints: Iterable[dict[str, Any]] = (),
        registered: Iterable[dict[str, Any]] = (),
    ) -> tuple[list[int], list[bytes]]:
        """wal_append, also returning each record's stored bytes (log_value): what the
        stream actors get, so records are packed once, for the log, and never pickled."""
        seqs: list[int] = []
        values = [log_value(start, wire) for _, start, wire in records]
        with self.env.begin(write=True) as txn:
            for spec in registered:
                txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])
            for spec in new_endpoints:
                if txn.get(spec["uid"].encode(), db=self.db["endpoints"]) is None:
                    txn.put(spec["uid"].encode(), pack(spec), db=self.db["endpoints"])
            raw = txn.get(b"seq", db=self.db["meta"])
            seq = 0 if raw is None else unpack(raw)
            for (uid, _, _), value in zip(records, values, strict=True):
                seq += 1
                txn.put(wal_key(uid, seq), value, db=self.db["wal"])
                seqs.append(seq)
            txn.put(b"seq", pack(seq), db=self.db["meta"])
            self._add_wal_rows(txn, sum(int(wire["n"]) for _, _, wire in records))
        self.full_since = None  # there was room after all (commits freed pages)
        return seqs, values

    def _add_wal_rows(self, txn: Any, n: int) -> None:
        raw = txn.get(b"wal_rows", db=self.db["meta"])
        total = max(0, (0 if raw is None else int(unpack(raw))) + n)
        txn.put(b"wal_rows", pack(total), db=self.db["meta"])

    @growing
    def wal_rows(self) -> int:
        """Rows acknowledged and logged whose window is not committed yet."""
        with self.env.begin(db=self.db["meta"]) as txn:
            raw = txn.get(b"wal_rows")
        return 0 if raw is None else int(unpack(raw))

    @growing
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
                start, wire = from_log_value(value)
                out.append((SEQ.unpack(key[len(prefix) :])[0], start, wire))
        return out

    @growing
    def wal_batches(self, uid: str, seqs: list[int]) -> list[dict[str, Any]]:
        """The batch wires of logged records, in the order asked (a spilled window's rows
        are read back from here)."""
        out = []
        # buffers: each value is read where the map holds it, not copied first (the
        # decoder copies what it keeps)
        with self.env.begin(db=self.db["wal"], buffers=True) as txn:
            for seq in seqs:
                raw = txn.get(wal_key(uid, seq))
                if raw is None:
                    raise KeyError(f"logged record {seq} of {uid} is gone")
                out.append(unpack(raw)["b"])
        return out

    @growing
    def wal_size(self) -> int:
        with self.env.begin(db=self.db["wal"]) as txn:
            return int(txn.stat(self.db["wal"])["entries"])

    @growing
    def add_pending(self, paths: list[str]) -> None:
        with self.env.begin(db=self.db["pending"], write=True) as txn:
            for p in paths:
                txn.put(p.encode(), b"1")

    @growing
    def pending_files(self) -> list[str]:
        with self.env.begin(db=self.db["pending"]) as txn:
            return [k.decode() for k, _ in txn.cursor()]

    @growing
    def clear_pending(self, paths: list[str]) -> None:
        with self.env.begin(db=self.db["pending"], write=True) as txn:
            for p in paths:
                txn.delete(p.encode())
