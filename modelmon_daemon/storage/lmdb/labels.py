"""Ground truth and its join with predictions: `labels` (waiting for their
prediction), `predictions` (waiting for their label, until label_ttl), `joined` (pairs
not yet scored) and `detectors` (concept-drift detector state per endpoint)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from modelmon_daemon.core.records import pack, unpack
from modelmon_daemon.storage.lmdb.environment import SEP, LmdbEnvironment, compound_key, growing


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


class LabelsTable(LmdbEnvironment):
    @growing
    def log_labels(self, uid: str, pairs: list[tuple[str, Any]], now: float) -> int:
        """Durably store labels; a label whose prediction is already committed is joined at
        once. Returns how many were joined now."""
        joined = 0
        with self.env.begin(write=True) as txn:
            txn.put(b"labels:" + uid.encode(), b"1", db=self.db["meta"])
            for rid, label in pairs:
                key = compound_key(uid, rid)
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

    @growing
    def has_labels(self, uid: str) -> bool:
        """Whether labels were ever posted for the endpoint."""
        with self.env.begin(db=self.db["meta"]) as txn:
            return txn.get(b"labels:" + uid.encode()) is not None

    def _label_ttl(self, txn: Any) -> float:
        raw = txn.get(b"label_ttl", db=self.db["meta"])
        return 3600.0 if raw is None else float(unpack(raw))

    @growing
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
                raw = txn.get(compound_key(uid, rid), db=labels)
                if raw is not None:
                    waiting[rid] = unpack(raw)["label"]
        return joined, waiting

    @growing
    def get_detector(self, uid: str) -> bytes | None:
        with self.env.begin(db=self.db["detectors"]) as txn:
            raw = txn.get(uid.encode())
        return None if raw is None else bytes(raw)

    def _apply_performance(self, txn: Any, uid: str, update: PerformanceUpdate) -> None:
        for rid in update.used_joined:
            txn.delete(compound_key(uid, rid), db=self.db["joined"])
        for rid in update.used_labels:
            txn.delete(compound_key(uid, rid), db=self.db["labels"])
        for rid, output, ts in update.predictions:
            key = compound_key(uid, rid)
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
