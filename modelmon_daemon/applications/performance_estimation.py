"""Performance estimation before labels arrive (confidence-based, see
analytics/estimation.py): for a classifier registered with `score_output(s)` and a
labelled reference, each closed window gets estimated accuracy (a result, kind
model_performance, status from the drop against the reference's realized accuracy) and
estimated precision, recall, F1 and ROC AUC (metrics), each with `lower` and `upper`."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from modelmon_daemon.analytics.estimation import (
    Estimate,
    IsotonicCurve,
    calibrate_rows,
    estimate_binary,
    estimate_multiclass,
)
from modelmon_daemon.analytics.performance import classification_keys, drop_status
from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.core.enums import ResultKind, ResultStatus

NAME = "performance-estimation"


def window_seed(uid: str, start: float) -> int:
    """Bands are reproducible: the same window of the same endpoint draws the same labels."""
    return int.from_bytes(hashlib.sha1(f"{uid}:{start!r}".encode()).digest()[:8], "little")


def _column(outputs: list[np.ndarray], names: list[str], name: str) -> np.ndarray | None:
    if name not in names or names.index(name) >= len(outputs):
        return None
    return outputs[names.index(name)]


def _scores(column: np.ndarray) -> np.ndarray:
    try:
        return np.asarray(column, dtype=np.float64)
    except (TypeError, ValueError):
        values = [
            v if isinstance(v, int | float) and not isinstance(v, bool) else np.nan for v in column
        ]
        return np.asarray(values, dtype=np.float64)


def estimate_window(
    estimator: dict[str, Any],
    score_outputs: dict[str, str],
    prediction_output: str,
    names: list[str],
    outputs: list[np.ndarray],
    seed: int,
) -> tuple[dict[str, Estimate], int] | None:
    """Estimates for one window's outputs and the rows they rest on (rows with a
    prediction and finite scores); None when the window carries none."""
    classes = list(estimator["classes"])
    predicted_column = _column(outputs, names, prediction_output)
    columns = [_column(outputs, names, score_outputs[c]) for c in classes]
    if predicted_column is None or any(c is None for c in columns):
        return None
    scores = np.column_stack([_scores(c) for c in columns if c is not None])
    keys = np.asarray(classification_keys(predicted_column.tolist()), dtype=object)
    present = np.array([v is not None and v == v for v in predicted_column.tolist()], dtype=bool)
    usable = present & np.all(np.isfinite(scores), axis=1)
    n = int(usable.sum())
    if n == 0:
        return None
    scores, keys = scores[usable], keys[usable]
    curves = [IsotonicCurve.from_dict(c) for c in estimator["curves"]]
    if len(classes) == 1:  # binary: the positive class's score
        p = curves[0](scores[:, 0])
        return estimate_binary(p, keys == classes[0], scores[:, 0], seed), n
    p = calibrate_rows(curves, scores)
    index = {c: j for j, c in enumerate(classes)}
    predicted = np.array([index.get(k, -1) for k in keys.tolist()], dtype=np.int64)
    known = predicted >= 0
    if not np.all(known):
        # a predicted class the reference never scored: that row is wrong for sure; an
        # extra column of probability 0 keeps it in the counts
        p = np.column_stack([p, np.zeros(len(p))])
        scores = np.column_stack([scores, np.zeros(len(scores))])
        predicted = np.where(known, predicted, len(classes))
    return estimate_multiclass(p, predicted, scores, seed), n


class PerformanceEstimationApplication:
    NAME = NAME

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        endpoint = context.endpoint
        estimator = endpoint.get("performance_estimator") or {}
        score_outputs = endpoint.get("score_outputs") or {}
        if not estimator or not score_outputs or not context.batch.outputs:
            return []
        found = estimate_window(
            estimator,
            score_outputs,
            str(estimator.get("prediction_output", "")),
            list(endpoint.get("label_names") or []),
            context.batch.outputs,
            window_seed(context.endpoint_uid, context.start),
        )
        if found is None:
            return []
        estimates, n = found
        s = context.settings
        reference = (endpoint.get("reference_performance") or {}).get("accuracy")
        if reference is None:
            reference = estimator.get("reference_accuracy")
        accuracy = estimates["accuracy"]
        status, drop = drop_status(
            "accuracy",
            accuracy.value,
            reference,
            float(s.get("drop_potential", 0.05)),
            float(s.get("drop_detected", 0.1)),
        )
        if n < int(s.get("min_sample_size", 0)):
            status = ResultStatus.irrelevant
        calibration = {
            "poorly_calibrated": bool(estimator.get("poorly_calibrated")),
            "reference_ece": estimator.get("reference_ece"),
        }
        out: list[Result | Metric] = [
            Result(
                "estimated_accuracy",
                accuracy.value,
                ResultKind.model_performance,
                status,
                {
                    "lower": accuracy.lower,
                    "upper": accuracy.upper,
                    "reference": reference,
                    "relative_drop": drop,
                    "rows": n,
                    **calibration,
                },
            )
        ]
        for metric in ("precision", "recall", "f1", "roc_auc"):
            e = estimates[metric]
            out.append(Metric(f"estimated_{metric}", e.value, {"lower": e.lower, "upper": e.upper}))
        context.endpoint_updates["performance_estimated"] = {
            "start": context.start,
            "end": context.end,
            "rows": n,
            **{
                k: {"value": e.value, "lower": e.lower, "upper": e.upper}
                for k, e in estimates.items()
            },
            **calibration,
        }
        return out
