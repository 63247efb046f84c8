"""MLRun's result kinds and statuses, with MLRun's numeric values."""

from __future__ import annotations

import enum


class ResultKind(enum.IntEnum):
    data_drift = 0
    concept_drift = 1
    model_performance = 2
    system_performance = 3
    mm_app_anomaly = 4


class ResultStatus(enum.IntEnum):
    irrelevant = -1
    no_detection = 0
    potential_detection = 1
    detected = 2
