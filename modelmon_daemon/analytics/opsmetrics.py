"""Operational metrics of one endpoint over sliding wall-clock periods (pure).

Arrivals are counted in one-second buckets of a ring covering the longest period (1 h),
so a 5 m or 1 h figure is a sum over a slice, whatever the traffic.
"""

from __future__ import annotations

import bisect
import math

import numpy as np

RING_SECONDS = 3600


class ArrivalRing:
    def __init__(self, seconds: int = RING_SECONDS) -> None:
        self.seconds = seconds
        self.stamp = np.full(seconds, -1, dtype=np.int64)
        self.count = np.zeros(seconds, dtype=np.float64)  # predictions (sampling-weighted)
        self.latency_sum = np.zeros(seconds, dtype=np.float64)
        self.latency_n = np.zeros(seconds, dtype=np.int64)

    def add(self, now: float, rows: float, latency_us: np.ndarray) -> None:
        second = int(now)
        slot = second % self.seconds
        if self.stamp[slot] != second:
            self.stamp[slot] = second
            self.count[slot] = 0
            self.latency_sum[slot] = 0.0
            self.latency_n[slot] = 0
        self.count[slot] += rows
        known = latency_us[~np.isnan(latency_us)]
        self.latency_sum[slot] += float(known.sum())
        self.latency_n[slot] += int(known.shape[0])

    def _mask(self, now: float, period: int) -> np.ndarray:
        second = int(now)
        return (self.stamp > second - period) & (self.stamp <= second)

    def predictions_over(self, now: float, period: int) -> float:
        return float(self.count[self._mask(now, period)].sum())

    def count_over(self, now: float, period: int) -> int | float | None:
        """Predictions in the last `period` seconds, rounded (sampled rows weigh more).
        A sum too large for an exact integer stays a float, and one that is no number is
        None: a count must never break the JSON of a record (no integer past 2**63)."""
        return whole_count(self.predictions_over(now, period))

    def latency_avg_over(self, now: float, period: int) -> float | None:
        mask = self._mask(now, period)
        n = int(self.latency_n[mask].sum())
        if n == 0:
            return None
        value = float(self.latency_sum[mask].sum()) / n
        return value if math.isfinite(value) else None

    def snapshot(self, now: float) -> dict[str, float | int | None]:
        return {
            "latency_avg_5m": self.latency_avg_over(now, 300),
            "latency_avg_1h": self.latency_avg_over(now, 3600),
            "predictions_count_5m": self.count_over(now, 300),
            "predictions_count_1h": self.count_over(now, 3600),
            "predictions_per_second": self.predictions_over(now, 60) / 60.0,
        }


def whole_count(value: float) -> int | float | None:
    """`value` rounded to an int while ints represent it exactly, else as it is (or None
    when it is no number)."""
    if not math.isfinite(value):
        return None
    return round(value) if abs(value) < 2.0**53 else float(value)


# model latency buckets (seconds): 100 µs .. 10 s
LATENCY_BUCKETS_SECONDS = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0,
)  # fmt: skip


class CumulativeHistogram:
    """A Prometheus-style histogram (counts of observations <= each bound, their sum and
    count) that only grows: PromQL windows it (rate, histogram_quantile)."""

    def __init__(self, bounds: tuple[float, ...] = LATENCY_BUCKETS_SECONDS) -> None:
        self.bounds = np.asarray(bounds, dtype=np.float64)
        self.bound_list = [float(b) for b in bounds]
        self.counts = np.zeros(len(bounds) + 1, dtype=np.float64)  # last: above every bound
        self.sum = 0.0
        self.count = 0.0

    def observe(self, values: np.ndarray) -> None:
        """Observe many values at once (NaN = unknown, skipped)."""
        known = values[~np.isnan(values)]
        if not known.size:
            return
        # bucket i holds bounds[i-1] < v <= bounds[i]: Prometheus' `le`
        index = np.searchsorted(self.bounds, known, side="left")
        self.counts += np.bincount(index, minlength=len(self.counts))
        self.sum += float(known.sum())
        self.count += float(known.size)

    def observe_one(self, value: float) -> None:
        """One value, without numpy's per-call overhead (once per HTTP request)."""
        if value != value:
            return
        self.counts[bisect.bisect_left(self.bound_list, value)] += 1
        self.sum += value
        self.count += 1

    def buckets(self) -> list[tuple[str, float]]:
        """(le, cumulative count) pairs, `+Inf` last, as Prometheus exposes them."""
        cumulative = np.cumsum(self.counts)
        pairs = [(_bound(b), float(c)) for b, c in zip(self.bounds, cumulative[:-1], strict=True)]
        return [*pairs, ("+Inf", float(cumulative[-1]))]

    def to_dict(self) -> dict[str, object]:
        return {"buckets": self.buckets(), "sum": self.sum, "count": self.count}


def _bound(value: float) -> str:
    return repr(float(value))
