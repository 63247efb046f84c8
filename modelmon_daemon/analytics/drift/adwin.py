"""ADWIN (Bifet and Gavalda, 2007): an adaptive window that drops its older part when the
means of the two parts differ by more than a bound that holds with confidence delta.

The window is an exponential histogram (at most `max_buckets` buckets of each size 2^k),
so memory and time are O(log W). Every `clock` updates each split point is tested with
the variance-aware bound eps = sqrt(2 m v ln(2 ln(W) / delta)) + 2/3 m ln(2 ln(W) / delta),
m = 1 / (n0 - min_len + 1) + 1 / (n1 - min_len + 1), v the window variance. After a detection
the next update starts from an empty window (River's ADWIN does the same; tests check both
give the same detection indices). `delta`
defaults to 0.0002 (River's is 0.002) to keep false alarms under one per 100k
stationary events.
"""

from __future__ import annotations

import math


class ADWIN:
    def __init__(
        self,
        delta: float = 0.0002,
        clock: int = 32,
        max_buckets: int = 5,
        min_window_length: int = 5,
        grace_period: int = 10,
    ) -> None:
        self.delta = delta
        self.clock = clock
        self.max_buckets = max_buckets
        self.min_window_length = min_window_length
        self.grace_period = grace_period
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        # rows[k]: buckets of size 2**k, oldest first, each [total, variance_sum]
        self.rows: list[list[list[float]]] = [[]]
        self.width = 0
        self.total = 0.0
        self.variance = 0.0  # sum of squared deviations over the window
        self.ticks = 0

    @property
    def estimation(self) -> float:
        return self.total / self.width if self.width else 0.0

    def update(self, x: float) -> ADWIN:
        if self.drift_detected:  # start afresh after a detection, as River does
            self._reset()
            self.drift_detected = False
        if self.width:
            mean = self.total / self.width
            self.variance += self.width * (x - mean) ** 2 / (self.width + 1)
        self.width += 1
        self.total += x
        self.rows[0].append([x, 0.0])
        self._compress()
        self.ticks += 1
        if self.ticks % self.clock == 0 and self.width > self.grace_period:
            self.drift_detected = self._detect()
        return self

    def _compress(self) -> None:
        k = 0
        while k < len(self.rows) and len(self.rows[k]) > self.max_buckets:
            (t1, v1), (t2, v2) = self.rows[k].pop(0), self.rows[k].pop(0)
            n = 2**k
            merged = [t1 + t2, v1 + v2 + n * n / (2 * n) * (t1 / n - t2 / n) ** 2]
            if k + 1 == len(self.rows):
                self.rows.append([])
            self.rows[k + 1].append(merged)
            k += 1

    def _drop_oldest(self) -> None:
        k = len(self.rows) - 1
        while not self.rows[k]:
            k -= 1
        total, var = self.rows[k].pop(0)
        n = 2**k
        old_width = self.width
        self.width -= n
        self.total -= total
        if self.width:
            mean_rest = self.total / self.width
            self.variance -= var + n * self.width / old_width * (total / n - mean_rest) ** 2
            self.variance = max(self.variance, 0.0)
        else:
            self.variance = 0.0
        while len(self.rows) > 1 and not self.rows[-1]:
            self.rows.pop()

    def _detect(self) -> bool:
        changed = False
        while True:
            cut = False
            n0, u0 = 0, 0.0
            buckets = [
                (2**k, b[0]) for k in range(len(self.rows) - 1, -1, -1) for b in self.rows[k]
            ]
            for size, total in buckets[:-1]:
                n0 += size
                u0 += total
                n1, u1 = self.width - n0, self.total - u0
                if n0 < self.min_window_length or n1 < self.min_window_length:
                    continue
                if self._significant(n0, n1, u0 / n0, u1 / n1):
                    cut = True
                    break
            if not cut:
                return changed
            changed = True
            self._drop_oldest()

    def _significant(self, n0: int, n1: int, mean0: float, mean1: float) -> bool:
        v = self.variance / self.width
        dd = math.log(2.0 * math.log(self.width) / self.delta)
        m = 1.0 / (n0 - self.min_window_length + 1) + 1.0 / (n1 - self.min_window_length + 1)
        epsilon = math.sqrt(2.0 * m * v * dd) + 2.0 / 3.0 * dd * m
        return abs(mean0 - mean1) > epsilon
