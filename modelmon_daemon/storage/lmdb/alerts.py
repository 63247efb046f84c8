"""Alerts (`alerts`), their state per entity (`alert_state`), their history
(`alert_history`), and the notification outbox (`outbox`), whose entries are put in the
transaction of the window that raised them and settled by the delivery loop."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from modelmon_daemon.alerts.engine import Decision, evaluate, manual_reset
from modelmon_daemon.alerts.model import AlertConfig, AlertEvent
from modelmon_daemon.core.records import pack, unpack
from modelmon_daemon.storage.lmdb.environment import (
    SEP,
    SEQ,
    LmdbEnvironment,
    compound_key,
    growing,
)

# (alert, the results that fired in one window of one endpoint) -> outbox entries, one
# per channel
Notifier = Callable[[AlertConfig, list[AlertEvent]], list[dict[str, Any]]]


class AlertsTable(LmdbEnvironment):
    @growing
    def put_alert(self, alert: AlertConfig) -> None:
        with self.env.begin(db=self.db["alerts"], write=True) as txn:
            txn.put(alert.name.encode(), pack(alert.to_dict()))

    @growing
    def get_alert(self, name: str) -> AlertConfig | None:
        with self.env.begin(db=self.db["alerts"]) as txn:
            raw = txn.get(name.encode())
        return None if raw is None else AlertConfig.from_dict(unpack(raw))

    @growing
    def list_alerts(self) -> list[AlertConfig]:
        with self.env.begin(db=self.db["alerts"]) as txn:
            return [AlertConfig.from_dict(unpack(v)) for _, v in txn.cursor()]

    @growing
    def alert_count(self) -> int:
        with self.env.begin(db=self.db["alerts"]) as txn:
            return int(txn.stat(self.db["alerts"])["entries"])

    @growing
    def delete_alert(self, name: str) -> bool:
        with self.env.begin(write=True) as txn:
            found = txn.delete(name.encode(), db=self.db["alerts"])
            for key in self._prefixed_keys(txn, "alert_state", name):
                txn.delete(key, db=self.db["alert_state"])
        return bool(found)

    @growing
    def alert_states(self, name: str) -> dict[str, dict[str, Any]]:
        with self.env.begin() as txn:
            out = {}
            for key in self._prefixed_keys(txn, "alert_state", name):
                entity = key.split(SEP, 1)[1].decode()
                out[entity] = unpack(bytes(txn.get(key, db=self.db["alert_state"]) or b""))
            return out

    @growing
    def alert_history(self, name: str, limit: int = 1000) -> list[dict[str, Any]]:
        with self.env.begin() as txn:
            keys = self._prefixed_keys(txn, "alert_history", name)[-limit:]
            return [unpack(bytes(txn.get(k, db=self.db["alert_history"]) or b"")) for k in keys]

    def _history(self, txn: Any, name: str, record: dict[str, Any]) -> None:
        raw = txn.get(b"history_seq", db=self.db["meta"])
        seq = (0 if raw is None else unpack(raw)) + 1
        txn.put(b"history_seq", pack(seq), db=self.db["meta"])
        key = compound_key(name, f"{record['time']:020.6f}", f"{seq:012d}")
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
                key = compound_key(alert.name, uid)
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

    @growing
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

    def _outbox_put(self, txn: Any, entry: dict[str, Any]) -> None:
        raw = txn.get(b"outbox_seq", db=self.db["meta"])
        seq = (0 if raw is None else unpack(raw)) + 1
        txn.put(b"outbox_seq", pack(seq), db=self.db["meta"])
        entry = {"attempts": 0, "next_at": 0.0, "created": time.time(), **entry, "seq": seq}
        txn.put(SEQ.pack(seq), pack(entry), db=self.db["outbox"])

    @growing
    def outbox(self) -> list[dict[str, Any]]:
        with self.env.begin(db=self.db["outbox"]) as txn:
            return [unpack(v) for _, v in txn.cursor()]

    @growing
    def outbox_retry(self, entry: dict[str, Any], error: str, next_at: float) -> None:
        with self.env.begin(write=True) as txn:
            updated = {
                **entry,
                "attempts": entry["attempts"] + 1,
                "next_at": next_at,
                "last_error": error,
            }
            txn.put(SEQ.pack(entry["seq"]), pack(updated), db=self.db["outbox"])
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

    @growing
    def outbox_done(self, entry: dict[str, Any], delivered: bool, error: str = "") -> None:
        with self.env.begin(write=True) as txn:
            txn.delete(SEQ.pack(entry["seq"]), db=self.db["outbox"])
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
