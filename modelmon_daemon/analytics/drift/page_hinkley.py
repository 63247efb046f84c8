"""Page-Hinkley test for a change in the mean of a standardized stream.

m_T = sum_t (x_t - mean_t - delta); an increase is flagged when m_T - min_t m_t > threshold
(a decrease symmetrically with mode "both"). Defaults delta=0.1, threshold=50 are for
standardized input (unit variance): a random walk with drift -delta rarely climbs 50, so
stationary streams raise well under one alarm per 100k events, while a 1-sd shift is
found within about 50-60 events. After a detection the test restarts. `alpha` < 1 fades
old deviations (River's forgetting factor, whose default there is 0.9999); here it defaults
to 1, the classic test: tests check both against River's implementation.
"""

from __future__ import annotations


class PageHinkley:
    def __init__(
        self,
        min_instances: int = 30,
        delta: float = 0.1,
        threshold: float = 50.0,
        mode: str = "both",
        alpha: float = 1.0,
    ) -> None:
        if mode not in ("up", "down", "both"):
            raise ValueError("mode must be up, down or both")
        self.min_instances = min_instances
        self.delta = delta
        self.threshold = threshold
        self.mode = mode
        self.alpha = alpha
        self.drift_detected = False
        self._reset()

    def _reset(self) -> None:
        self.n = 0
        self.mean = 0.0
        self.sum_up = 0.0
        self.min_up = 0.0
        self.sum_down = 0.0
        self.max_down = 0.0

    def update(self, x: float) -> PageHinkley:
        if self.drift_detected:
            self._reset()
            self.drift_detected = False
        self.n += 1
        self.mean += (x - self.mean) / self.n
        self.sum_up = self.alpha * self.sum_up + x - self.mean - self.delta
        self.min_up = min(self.min_up, self.sum_up)
        self.sum_down = self.alpha * self.sum_down + x - self.mean + self.delta
        self.max_down = max(self.max_down, self.sum_down)
        if self.n < self.min_instances:
            return self
        up = self.sum_up - self.min_up > self.threshold
        down = self.max_down - self.sum_down > self.threshold
        self.drift_detected = (
            up if self.mode == "up" else down if self.mode == "down" else (up or down)
        )
        return self
