"""Alert evaluation (pure): a window's events for one endpoint and an alert's state ->
the new state, whether to notify, and what to record.

Grouped like Alertmanager's `group_by`: state is per (alert, endpoint), and one window
that fires several results (general_drift, drifted_features_share, ...) makes one
notification listing all of them, not one per result.

- A window with a trigger event counts toward `criteria` (count within period, by
  event time).
- Reaching the count activates the alert and notifies, unless the endpoint was notified
  less than `cooldown` ago (wall clock): then it is recorded as suppressed.
- An active alert is never sent again until it resets: automatically when a window of
  the endpoint fires none of its triggers and reports a matched result as fine
  (reset_policy auto), or by hand (manual).
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
    fired: list[AlertEvent] = field(default_factory=list)  # what the notification lists


def evaluate(
    alert: AlertConfig, state: dict[str, Any], events: list[AlertEvent], now: float
) -> Decision:
    """`events`: one endpoint's events of one window that match the alert's entities."""
    state = {**new_state(), **state, "times": list(state.get("times", []))}
    fired = sorted(
        (e for e in events if e.kind is not None and alert.matches_kind(e.kind)),
        key=_headline_order,
    )
    if not fired:
        clears = any(e.kind is None for e in events)
        if clears and state["active"] and alert.reset_policy == "auto":
            state["active"] = False
            state["times"] = []
            record = _record(events[0], [], now)
            return Decision(state, history=[{**record, "action": "reset", "by": "auto"}])
        return Decision(state)
    record = _record(fired[0], fired, now)
    if state["active"]:
        return Decision(state, history=[{**record, "action": "deduplicated"}])
    end = max(e.end for e in fired)
    # the last `count` times within the period decide; older ones are never needed, so a
    # long period in a cooldown keeps at most `count` of them
    times = ([t for t in state["times"] if t > end - alert.period and t != end] + [end])[
        -alert.count :
    ]
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
    return Decision(state, notify=True, fired=fired, history=[{**record, "action": "activated"}])


HEADLINE = ".histogram-data-drift.result.general_drift"  # MLRun's drift result


def _headline_order(event: AlertEvent) -> tuple[int, int, str]:
    """Most severe first; among equally severe results MLRun's `general_drift` leads (the
    notification's single-result placeholders and the history's value are the first's:
    a drift alert headed by, say, an out-of-range rate misleads), then by entity."""
    return (-(event.status or 0), 0 if event.entity.endswith(HEADLINE) else 1, event.entity)


def _record(event: AlertEvent, fired: list[AlertEvent], now: float) -> dict[str, Any]:
    return {
        "time": now,
        "entity": event.endpoint_id,
        "entities": [e.entity for e in fired],
        "kind": event.kind,
        "value": event.value,
        "start": event.start,
        "end": event.end,
    }


def manual_reset(state: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """Returns the reset state and whether it was active."""
    was = bool(state.get("active"))
    return {**new_state(), **state, "active": False, "times": []}, was
