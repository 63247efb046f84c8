"""Operational metrics of one endpoint over sliding wall-clock periods (pure).

Arrivals are counted in one-second buckets of a ring covering the longest period (1 h),
so a 5 m or 1 h figure is a sum over a slice, whatever the traffic.
"""

from __future__ import annotations

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

    def count_over(self, now: float, period: int) -> int:
        """Predictions in the last `period` seconds, rounded (sampled rows weigh more)."""
        return round(self.predictions_over(now, period))

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
