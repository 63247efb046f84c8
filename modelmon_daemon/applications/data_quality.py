"""Data quality per window: missing rate and out-of-reference-range rate per feature, and
features missing altogether (a clear result instead of a KeyError). Vectorized over all
features at once."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelmon_daemon.applications.base import Metric, MonitoringContext, Result, endpoint_context
from modelmon_daemon.applications.operational_health import threshold_status
from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
from modelmon_daemon.core.enums import ResultKind, ResultStatus

NAME = "data-quality"


def quality_rates(
    matrix: np.ndarray, lows: np.ndarray, highs: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(missing rate, out-of-range rate among present values) per column."""
    rows = matrix.shape[0]
    missing = np.isnan(matrix)
    present = rows - missing.sum(axis=0)
    with np.errstate(invalid="ignore"):
        outside = ((matrix < lows) | (matrix > highs)).sum(axis=0)
    missing_rate = missing.sum(axis=0) / max(rows, 1)
    out_rate = np.divide(outside, present, out=np.zeros(len(present)), where=present > 0)
    return missing_rate, out_rate


# unexpected columns named in a result: those most rows had (the value counts them all);
# a client sending a new column name on every request would otherwise make the list as
# long as the window's requests
MAX_LISTED_COLUMNS = 20


def listed_columns(unexpected: dict[str, int]) -> dict[str, int]:
    """The MAX_LISTED_COLUMNS unexpected columns most rows had (ties by name), with their
    row counts."""
    top = sorted(unexpected.items(), key=lambda item: (-item[1], item[0]))[:MAX_LISTED_COLUMNS]
    return dict(top)


def _bound(stats: dict[str, Any], name: str, key: str, unknown: float) -> float:
    """A feature's reference min or max; `unknown` unless it is a number (MLRun's stats of
    a time column hold its min and max as text)."""
    value = stats.get(name, {}).get(key)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return unknown
    return float(value)


def _bounds(stats: dict[str, Any], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Each feature's reference (min, max), unbounded where unknown, once per reference
    (see reference_cache)."""

    def build() -> tuple[np.ndarray, np.ndarray]:
        lows = np.array([_bound(stats, n, "min", -np.inf) for n in names], dtype=np.float64)
        highs = np.array([_bound(stats, n, "max", np.inf) for n in names], dtype=np.float64)
        return np.where(np.isnan(lows), -np.inf, lows), np.where(np.isnan(highs), np.inf, highs)

    return REFERENCE_CACHE.get(stats, ("bounds", names), build)


class DataQualityApplication:
    NAME = NAME

    def prepare(self, endpoint: dict[str, Any]) -> None:
        """The reference's bounds, built before the endpoint's first window."""
        context = endpoint_context(NAME, endpoint)
        _bounds(context.reference_stats, tuple(context.feature_names))

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        s = context.settings
        names = context.feature_names
        lows, highs = _bounds(context.reference_stats, tuple(names))
        missing, out_of_range = quality_rates(context.features, lows, highs)
        rows = len(context.batch)
        for j, values in context.batch.categorical.items():  # their matrix column is NaN
            absent = sum(v is None or (isinstance(v, float) and v != v) for v in values.tolist())
            missing[j] = absent / rows if rows else 0.0
            out_of_range[j] = 0.0
        gone = [n for n, rate in zip(names, missing, strict=True) if rate == 1.0]
        per_feature = {
            n: {"missing_rate": float(m), "out_of_range_rate": float(o)}
            for n, m, o in zip(names, missing, out_of_range, strict=True)
        }
        worst_missing = float(missing.max()) if len(names) else 0.0
        worst_range = float(out_of_range.max()) if len(names) else 0.0
        small = len(context.batch) < int(s.get("min_sample_size", 0))
        range_status = threshold_status(
            worst_range, s.get("out_of_range_potential", 0.05), s.get("out_of_range_detected", 0.2)
        )
        return [
            Metric("missing_rate_mean", float(missing.mean()) if len(names) else 0.0),
            Metric("out_of_range_rate_mean", float(out_of_range.mean()) if len(names) else 0.0),
            Result(
                "missing_rate_max",
                worst_missing,
                ResultKind.mm_app_anomaly,
                threshold_status(
                    worst_missing, s.get("missing_potential", 0.05), s.get("missing_detected", 0.2)
                ),
                {"features": per_feature},
            ),
            Result(
                "out_of_range_rate_max",
                worst_range,
                ResultKind.data_drift,
                ResultStatus.irrelevant if small else range_status,
                {"features": per_feature},
            ),
            Result(
                "unexpected_columns",
                float(len(context.batch.unexpected)),
                ResultKind.mm_app_anomaly,
                ResultStatus.potential_detection
                if context.batch.unexpected
                else ResultStatus.no_detection,
                {"columns": listed_columns(context.batch.unexpected)},
            ),
            Result(
                "missing_features",
                float(len(gone)),
                ResultKind.mm_app_anomaly,
                ResultStatus.detected if gone else ResultStatus.no_detection,
                {"missing": gone},
            ),
        ]
