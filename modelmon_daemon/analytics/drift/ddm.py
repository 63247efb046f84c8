"""DDM (Gama et al., 2004) on a stream of errors in [0, 1] (1 = the prediction was wrong).

With p the running error rate after i events and s = sqrt(p (1 - p) / i), it keeps the
minimum of p + s; past `warm_start` events, a warning when p + s > p_min + warning_level *
s_min, a drift when p + s > p_min + drift_level * s_min (River's DDM exactly, tested).
The defaults (warning 2, drift 4, 1000 events of grace) are stricter than the paper's
2 / 3 / 30, which on stationary streams alarms far more often than once per 100k events.
After a drift the statistics restart.
"""

from __future__ import annotations

import math


class DDM:
    def __init__(
        self, warm_start: int = 1000, warning_level: float = 2.0, drift_level: float = 4.0
    ) -> None:
        self.warm_start = warm_start
        self.warning_level = warning_level
        self.drift_level = drift_level
        self.drift_detected = False
        self.warning_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.p = 0.0
        self.p_min = math.inf
        self.s_min = math.inf
        self.ps_min = math.inf

    def update(self, error: float) -> DDM:
        if self.drift_detected:
            self._reset()
            self.drift_detected = False
        if not 0.0 <= error <= 1.0:
            raise ValueError(f"DDM takes errors in [0, 1], got {error}")
        self.n += 1
        self.p += (error - self.p) / self.n
        s = math.sqrt(self.p * (1 - self.p) / self.n)
        self.warning_detected = False
        if self.n <= self.warm_start:
            return self
        if self.p + s <= self.ps_min:
            self.p_min, self.s_min, self.ps_min = self.p, s, self.p + s
        # strictly greater, as in the paper and River: with an error rate of 0 (a model that
        # is always right) p + s = p_min + k * s_min = 0 must not alarm
        if self.p + s > self.p_min + self.drift_level * self.s_min:
            self.drift_detected = True
        elif self.p + s > self.p_min + self.warning_level * self.s_min:
            self.warning_detected = True
        return self
