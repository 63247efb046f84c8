"""Concept drift: a detector over the stream of prediction errors of the pairs the label
join gives (DDM on 0/1 misclassifications, ADWIN on absolute errors), its state kept
between windows. The result is 1.0 (detected) when it raised an alarm in this window.

A stateful application: the state comes in and goes out as bytes, stored by the owner
of the label join in the transaction of the window that changed it."""

from __future__ import annotations

import pickle
from typing import Any

from modelmon_daemon.analytics.drift import ADWIN, DDM
from modelmon_daemon.applications.model_performance import LabeledWindow
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import ResultRecord

NAME = "concept-drift"


class ConceptDriftApplication:
    NAME = NAME

    def detect(self, window: LabeledWindow, state: bytes | None) -> tuple[ResultRecord, bytes]:
        """The window's result and the detector's new state."""
        fresh = DDM() if window.model_type == "classification" else ADWIN()
        held: dict[str, Any] = pickle.loads(state) if state else {"detector": fresh, "seen": 0}
        detector, seen_before = held["detector"], int(held["seen"])
        errors = window.errors()
        alarm_at = None
        for i, error in enumerate(errors):
            if detector.update(error).drift_detected and alarm_at is None:
                alarm_at = seen_before + i
        seen = seen_before + len(errors)
        n = len(errors)
        meta = window.meta
        record = ResultRecord(
            NAME,
            "error_stream_drift",
            "result",
            1.0 if alarm_at is not None else 0.0,
            meta.start,
            meta.end,
            ResultKind.concept_drift,
            ResultStatus.detected if alarm_at is not None else ResultStatus.no_detection,
            {
                "detector": type(detector).__name__,
                "alarm_at_event": alarm_at,
                "events_seen": seen,
                "error_mean": float(sum(errors) / n) if n else 0.0,
            },
            n,
        )
        return record, pickle.dumps({"detector": detector, "seen": seen})
