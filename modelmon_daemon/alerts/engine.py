"""Alert evaluation (pure): an event and an alert's state -> the new state, whether to
notify, and what to record. State is per (alert, entity), so one endpoint's drift does not
hide another's.

- A trigger event counts toward `criteria` (count within period, by event time).
- Reaching the count activates the alert and notifies, unless the entity was notified
  less than `cooldown` ago (wall clock): then it is recorded as suppressed.
- An active alert is never sent again until it resets: automatically when the same
  entity reports no detection (reset_policy auto), or by hand (manual).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from modelmon_daemon.alerts.model import AlertConfig, AlertEvent


def new_state() -> dict[str, Any]:
    return {
        "active": False,
        "times": [],
        "last_notified": None,
        "activated_at": None,
        "notifications": 0,
    }


@dataclass
class Decision:
    state: dict[str, Any]
    notify: bool = False
    history: list[dict[str, Any]] = field(default_factory=list)


def evaluate(alert: AlertConfig, state: dict[str, Any], event: AlertEvent, now: float) -> Decision:
    state = {**new_state(), **state, "times": list(state.get("times", []))}
    record = {
        "time": now,
        "entity": event.entity,
        "kind": event.kind,
        "value": event.value,
        "start": event.start,
        "end": event.end,
    }
    if event.kind is None:
        if state["active"] and alert.reset_policy == "auto":
            state["active"] = False
            state["times"] = []
            return Decision(state, history=[{**record, "action": "reset", "by": "auto"}])
        return Decision(state)
    if not alert.matches_kind(event.kind):
        return Decision(state)
    if state["active"]:
        return Decision(state, history=[{**record, "action": "deduplicated"}])
    times = [t for t in state["times"] if t > event.end - alert.period] + [event.end]
    state["times"] = times
    if len(times) < alert.count:
        return Decision(state, history=[{**record, "action": "counted", "count": len(times)}])
    last = state["last_notified"]
    if last is not None and now - last < alert.cooldown:
        return Decision(
            state, history=[{**record, "action": "cooldown", "until": last + alert.cooldown}]
        )
    state.update(
        active=True,
        times=[],
        last_notified=now,
        activated_at=now,
        notifications=state["notifications"] + 1,
    )
    return Decision(state, notify=True, history=[{**record, "action": "activated"}])


def manual_reset(state: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Returns the reset state and whether it was active."""
    was = bool(state.get("active"))
    return {**new_state(), **state, "active": False, "times": []}, was
