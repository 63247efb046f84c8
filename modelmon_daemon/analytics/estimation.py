"""Confidence-based performance estimation (CBPE), per window, before labels arrive (pure).

A classifier's score is calibrated on a labelled reference with isotonic regression
(scikit-learn's `IsotonicRegression(out_of_bounds="clip")`: ties averaged, pool adjacent
violators, linear interpolation between the fitted points, clipped outside them). If the
calibrated probability p_i = P(y_i = positive | score_i) still holds in production (the
scores' meaning does not change, only the inputs' distribution), the expected confusion
matrix of a window is exact sums of probabilities:

    TP = sum p_i [pred_i = 1]      FP = sum (1 - p_i) [pred_i = 1]
    FN = sum p_i [pred_i = 0]      TN = sum (1 - p_i) [pred_i = 0]

giving accuracy, precision, recall and F1; ROC AUC is the trapezoid under the expected ROC
curve, walking the window by the model's own score (ties grouped). Multiclass: each class's
score is calibrated one-vs-rest, rows renormalized to sum to one, and precision, recall,
F1 and AUC are macro averages over the classes.

Sampling-error band: even a perfectly calibrated estimate differs from the realized value
because labels are random. Labels are drawn from the calibrated probabilities (seeded,
vectorized) and the realized metric computed for each draw: the 2.5th and 97.5th
percentiles are `lower` and `upper`, so a calibrated model's realized value lands inside
95% of the time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import isotonic_regression
from scipy.stats import rankdata

ECE_BINS = 10
BAND_DRAWS = 400
BAND_LEVEL = 0.95
BAND_CHUNK_CELLS = 4_000_000  # draws x rows x classes held at once


@dataclass(frozen=True)
class IsotonicCurve:
    """A fitted isotonic map: increasing knots `x` and their calibrated values `y`."""

    x: tuple[float, ...]
    y: tuple[float, ...]

    def __call__(self, scores: np.ndarray) -> np.ndarray:
        return np.interp(np.asarray(scores, dtype=np.float64), self.x, self.y)

    def to_dict(self) -> dict[str, list[float]]:
        return {"x": list(self.x), "y": list(self.y)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> IsotonicCurve:
        return cls(tuple(float(v) for v in data["x"]), tuple(float(v) for v in data["y"]))


def fit_isotonic(scores: np.ndarray, outcomes: np.ndarray) -> IsotonicCurve:
    """Increasing least-squares fit of outcomes (0/1) on scores, as scikit-learn's
    IsotonicRegression: equal scores are pooled into one weighted point first."""
    s = np.asarray(scores, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    if s.ndim != 1 or s.shape != o.shape or not len(s):
        raise ValueError("scores and outcomes must be non-empty and of equal length")
    if not (np.all(np.isfinite(s)) and np.all(np.isfinite(o))):
        raise ValueError("scores and outcomes must be finite")
    unique, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    means = np.bincount(inverse, weights=o) / counts
    fitted = isotonic_regression(means, weights=counts.astype(np.float64), increasing=True).x
    fitted = np.clip(fitted, 0.0, 1.0)
    return IsotonicCurve(tuple(unique.tolist()), tuple(fitted.tolist()))


def expected_calibration_error(probabilities: np.ndarray, outcomes: np.ndarray) -> float:
    """ECE over ECE_BINS equal-width bins: sum over bins of (share of rows) x |mean
    probability - share of positives|."""
    p = np.asarray(probabilities, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    if not len(p):
        return math.nan
    bins = np.minimum((p * ECE_BINS).astype(np.int64), ECE_BINS - 1)
    gap = np.abs(
        np.bincount(bins, weights=p, minlength=ECE_BINS)
        - np.bincount(bins, weights=o, minlength=ECE_BINS)
    )
    return float(np.sum(gap) / len(p))


def cross_fitted_ece(scores: np.ndarray, outcomes: np.ndarray) -> float:
    """ECE of isotonic calibration out of sample: fit on alternate halves of the
    reference, measure on the other half (what the calibrated estimates will be worth)."""
    s = np.asarray(scores, dtype=np.float64)
    o = np.asarray(outcomes, dtype=np.float64)
    if len(s) < 4:
        return math.nan
    fold = np.arange(len(s)) % 2 == 0
    calibrated = np.empty(len(s))
    for train in (fold, ~fold):
        curve = fit_isotonic(s[train], o[train])
        calibrated[~train] = curve(s[~train])
    return expected_calibration_error(calibrated, o)


@dataclass(frozen=True)
class Estimate:
    value: float
    lower: float
    upper: float


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)


def expected_binary_counts(p: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """Expected TP, FP, FN, TN of a window: p = calibrated P(positive), predicted = 0/1."""
    pos = np.asarray(predicted, dtype=bool)
    p = np.asarray(p, dtype=np.float64)
    return {
        "tp": float(np.sum(p[pos])),
        "fp": float(np.sum(1.0 - p[pos])),
        "fn": float(np.sum(p[~pos])),
        "tn": float(np.sum(1.0 - p[~pos])),
    }


def metrics_from_counts(c: dict[str, float]) -> dict[str, float]:
    tp, fp, fn, tn = c["tp"], c["fp"], c["fn"], c["tn"]
    n = tp + fp + fn + tn
    return {
        "accuracy": (tp + tn) / n if n else math.nan,
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
    }


def expected_roc_auc(p: np.ndarray, scores: np.ndarray) -> float:
    """Area under the expected ROC curve: rows taken by decreasing model score, ties as
    one step, each contributing p expected positives and 1 - p expected negatives."""
    p = np.asarray(p, dtype=np.float64)
    s = np.asarray(scores, dtype=np.float64)
    order = np.argsort(-s, kind="stable")
    s_sorted, p_sorted = s[order], p[order]
    last_of_tie = np.r_[s_sorted[1:] != s_sorted[:-1], True]
    tp = np.cumsum(p_sorted)[last_of_tie]
    fp = np.cumsum(1.0 - p_sorted)[last_of_tie]
    if tp[-1] <= 0 or fp[-1] <= 0:
        return math.nan
    tpr = np.r_[0.0, tp / tp[-1]]
    fpr = np.r_[0.0, fp / fp[-1]]
    return float(np.trapezoid(tpr, fpr))


def _auc_of_draws(draws: np.ndarray, ranks: np.ndarray) -> np.ndarray:
    """Realized ROC AUC of each row of 0/1 `draws` (Mann-Whitney with average ranks)."""
    n = draws.shape[1]
    n1 = draws.sum(axis=1)
    n0 = n - n1
    u = draws @ ranks - n1 * (n1 + 1) / 2.0
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((n1 > 0) & (n0 > 0), u / np.maximum(n1 * n0, 1.0), np.nan)


def _band(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return math.nan, math.nan
    tail = (1.0 - BAND_LEVEL) / 2.0
    return float(np.quantile(finite, tail)), float(np.quantile(finite, 1.0 - tail))


def _estimates(point: dict[str, float], draws: dict[str, list[np.ndarray]]) -> dict[str, Estimate]:
    """Each point estimate with the band of its metric over the label draws."""
    return {k: Estimate(v, *_band(np.concatenate(draws[k]))) for k, v in point.items()}


def _binary_draw_metrics(
    draws: np.ndarray, pos: np.ndarray, ranks: np.ndarray
) -> dict[str, np.ndarray]:
    """Realized metrics of label draws (rows) for fixed 0/1 predictions `pos`."""
    posf = pos.astype(np.float64)
    n = draws.shape[1]
    tp = draws @ posf
    predicted_pos = posf.sum()
    actual_pos = draws.sum(axis=1)
    fp = predicted_pos - tp
    fn = actual_pos - tp
    tn = n - tp - fp - fn
    return {
        "accuracy": (tp + tn) / n,
        "precision": _ratio(tp, np.full_like(tp, predicted_pos)),
        "recall": _ratio(tp, actual_pos),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
        "roc_auc": _auc_of_draws(draws, ranks),
    }


def estimate_binary(
    p: np.ndarray, predicted: np.ndarray, scores: np.ndarray, seed: int
) -> dict[str, Estimate]:
    """accuracy, precision, recall, f1 and roc_auc of one window, each with its band.
    p: calibrated P(positive); predicted: the model's 0/1 decisions; scores: raw scores."""
    p = np.asarray(p, dtype=np.float64)
    pos = np.asarray(predicted, dtype=bool)
    point = metrics_from_counts(expected_binary_counts(p, pos))
    point["roc_auc"] = expected_roc_auc(p, scores)
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    rng = np.random.default_rng(seed)
    collected: dict[str, list[np.ndarray]] = {k: [] for k in point}
    per_chunk = max(1, BAND_CHUNK_CELLS // max(len(p), 1))
    left = BAND_DRAWS
    p32 = p.astype(np.float32)
    while left > 0:
        m = min(per_chunk, left)
        draws = (rng.random((m, len(p)), dtype=np.float32) < p32).astype(np.float64)
        for k, v in _binary_draw_metrics(draws, pos, ranks).items():
            collected[k].append(v)
        left -= m
    return _estimates(point, collected)


def estimate_multiclass(
    p: np.ndarray, predicted: np.ndarray, scores: np.ndarray, seed: int
) -> dict[str, Estimate]:
    """Macro one-vs-rest estimates. p: rows x classes calibrated probabilities (rows sum
    to 1); predicted: class index per row; scores: rows x classes raw scores."""
    p = np.asarray(p, dtype=np.float64)
    predicted = np.asarray(predicted, dtype=np.int64)
    n, k = p.shape
    rows = np.arange(n)
    per_class = []
    for c in range(k):
        counts = expected_binary_counts(p[:, c], predicted == c)
        metrics = metrics_from_counts(counts)
        metrics["roc_auc"] = expected_roc_auc(p[:, c], scores[:, c])
        per_class.append(metrics)
    point = {
        "accuracy": float(np.mean(p[rows, predicted])) if n else math.nan,
        **{
            m: float(np.nanmean([pc[m] for pc in per_class]))
            for m in ("precision", "recall", "f1", "roc_auc")
        },
    }
    rng = np.random.default_rng(seed)
    cumulative = np.cumsum(p, axis=1)
    cumulative[:, -1] = 1.0
    ranks = [rankdata(scores[:, c]) for c in range(k)]
    collected: dict[str, list[np.ndarray]] = {key: [] for key in point}
    per_chunk = max(1, BAND_CHUNK_CELLS // max(n * k, 1))
    left = BAND_DRAWS
    while left > 0:
        m = min(per_chunk, left)
        u = rng.random((m, n))
        labels = (u[:, :, None] >= cumulative[None, :, :]).sum(axis=2)  # m x n class index
        collected["accuracy"].append(np.mean(labels == predicted[None, :], axis=1))
        per_metric: dict[str, list[np.ndarray]] = {
            key: [] for key in ("precision", "recall", "f1", "roc_auc")
        }
        for c in range(k):
            draws = (labels == c).astype(np.float64)
            for key, v in _binary_draw_metrics(draws, predicted == c, ranks[c]).items():
                if key != "accuracy":
                    per_metric[key].append(v)
        for key, values in per_metric.items():
            collected[key].append(_class_mean(np.vstack(values)))
        left -= m
    return _estimates(point, collected)


def _class_mean(per_class: np.ndarray) -> np.ndarray:
    """Mean over classes (rows) ignoring NaN (an AUC is undefined for a class absent
    from a draw); NaN where every class is."""
    valid = np.isfinite(per_class)
    total = np.where(valid, per_class, 0.0).sum(axis=0)
    count = valid.sum(axis=0)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def calibrate_rows(curves: list[IsotonicCurve], scores: np.ndarray) -> np.ndarray:
    """Per-class calibrated probabilities, each row renormalized to sum to one (a row the
    curves send to all zeros stays uniform)."""
    scores = np.asarray(scores, dtype=np.float64)
    p = np.column_stack([curve(scores[:, c]) for c, curve in enumerate(curves)])
    total = p.sum(axis=1, keepdims=True)
    uniform = np.full_like(p, 1.0 / p.shape[1])
    return np.where(total > 0, p / np.where(total > 0, total, 1.0), uniform)


POSITIVE_CLASS = "1"


def fit_estimator(
    classes: list[str],
    scores: np.ndarray,
    labels: list[str],
    predictions: list[str],
    max_calibration_error: float,
) -> dict[str, Any]:
    """The performance estimator of an endpoint, from its labelled reference: one
    isotonic curve per scored class, the reference's realized metrics, and its calibration
    check. `classes`: ["1"] for a binary model's positive-class score, else one class per
    score column; labels and predictions are class keys (see performance.classification_keys).
    """
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim == 1:
        s = s[:, None]
    if s.shape != (len(labels), len(classes)) or len(predictions) != len(labels):
        raise ValueError("scores, labels and predictions must have one entry per reference row")
    if not np.all(np.isfinite(s)):
        raise ValueError("scores must be finite numbers")
    y = np.asarray(labels, dtype=object)
    outcomes = [(y == c).astype(np.float64) for c in classes]
    curves = [fit_isotonic(s[:, j], outcomes[j]) for j in range(len(classes))]
    raw_ece = float(
        np.mean([expected_calibration_error(s[:, j], outcomes[j]) for j in range(len(classes))])
    )
    calibrated_ece = float(
        np.mean([cross_fitted_ece(s[:, j], outcomes[j]) for j in range(len(classes))])
    )
    accuracy = float(np.mean(y == np.asarray(predictions, dtype=object)))
    return {
        "classes": list(classes),
        "curves": [c.to_dict() for c in curves],
        "reference_rows": len(labels),
        "reference_accuracy": accuracy,
        "reference_ece": raw_ece,
        "calibrated_ece": calibrated_ece,
        "poorly_calibrated": bool(raw_ece > max_calibration_error),
    }
