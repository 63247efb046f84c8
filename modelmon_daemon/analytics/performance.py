"""Model performance from (label, prediction) pairs (pure): accuracy, precision, recall
and F1 for classifiers (binary with positive class 1, otherwise macro over the classes
seen), MAE, RMSE and R2 for regressors; and the status of a drop against the reference
performance given at registration."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from modelmon_daemon.core.enums import ResultStatus

HIGHER_IS_BETTER = {"accuracy", "precision", "recall", "f1", "r2"}


def _key(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def infer_model_type(labels: Sequence[Any], predictions: Sequence[Any]) -> str:
    """classification when predictions and labels are integers, booleans or strings;
    regression otherwise (any non-integer number)."""
    for value in (*labels, *predictions):
        if isinstance(value, bool | str) or value is None:
            continue
        if isinstance(value, int | float) and float(value).is_integer():
            continue
        return "regression"
    return "classification"


def classification_keys(values: Sequence[Any]) -> list[str]:
    """Labels and predictions compared as classes: 1, 1.0 and True are the same class."""
    return [_key(v) for v in values]


def classification_metrics(labels: Sequence[Any], predictions: Sequence[Any]) -> dict[str, float]:
    y = np.array([_key(v) for v in labels])
    p = np.array([_key(v) for v in predictions])
    classes = sorted(set(y.tolist()) | set(p.tolist()))
    accuracy = float(np.mean(y == p)) if len(y) else math.nan
    binary = set(classes) <= {"0", "1"}
    chosen = ["1"] if binary else classes
    precisions, recalls, f1s = [], [], []
    for c in chosen:
        tp = float(np.sum((p == c) & (y == c)))
        fp = float(np.sum((p == c) & (y != c)))
        fn = float(np.sum((p != c) & (y == c)))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        precisions.append(precision)
        recalls.append(recall)
        f1s.append(f1)
    return {
        "accuracy": accuracy,
        "precision": float(np.mean(precisions)),
        "recall": float(np.mean(recalls)),
        "f1": float(np.mean(f1s)),
    }


def regression_metrics(labels: Sequence[float], predictions: Sequence[float]) -> dict[str, float]:
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(predictions, dtype=np.float64)
    err = y - p
    ss_tot = float(np.sum((y - y.mean()) ** 2)) if len(y) else 0.0
    return {
        "mae": float(np.mean(np.abs(err))),
        "rmse": float(math.sqrt(np.mean(err**2))),
        "r2": 1.0 - float(np.sum(err**2)) / ss_tot if ss_tot > 0 else math.nan,
    }


def drop_status(
    name: str, value: float, reference: float | None, potential: float, detected: float
) -> tuple[ResultStatus, float | None]:
    """(status, relative drop): a drop is worse-than-reference, relative to the reference
    (for accuracy-like metrics reference - value; for errors value - reference)."""
    if reference is None or not math.isfinite(value) or reference == 0:
        return ResultStatus.no_detection, None
    drop = (reference - value) if name in HIGHER_IS_BETTER else (value - reference)
    relative = drop / abs(reference)
    if relative >= detected:
        return ResultStatus.detected, relative
    if relative >= potential:
        return ResultStatus.potential_detection, relative
    return ResultStatus.no_detection, relative
