"""False alarms of the concept-drift detectors at default settings on 1M stationary
events (standardized normal for Page-Hinkley and ADWIN, Bernoulli(0.1) errors for DDM),
and the detection delay after a change, in the same run. Goal: at most 1 false alarm per
100k events."""

from __future__ import annotations

import time

import numpy as np

from modelmon_daemon.analytics.drift import ADWIN, DDM, PageHinkley

N = 1_000_000


def run(make, stream):
    detector = make()
    t0 = time.perf_counter()
    alarms = sum(detector.update(float(x)).drift_detected for x in stream)
    return alarms, time.perf_counter() - t0


def delay(make, stream, change):
    detector = make()
    for i, x in enumerate(stream):
        if detector.update(float(x)).drift_detected and i >= change:
            return i - change
    return None


def main() -> None:
    rng = np.random.default_rng(2026)
    normal = rng.normal(0, 1, N)
    errors = (rng.random(N) < 0.1).astype(float)
    shift = np.concatenate([rng.normal(0, 1, 5000), rng.normal(1, 1, 5000)])
    err_shift = np.concatenate([rng.random(5000) < 0.1, rng.random(5000) < 0.2]).astype(float)
    print(f"{N:,} stationary events per detector, default settings")
    for name, make, stream, changed in (
        ("Page-Hinkley", PageHinkley, normal, shift),
        ("ADWIN", ADWIN, normal, shift),
        ("DDM", DDM, errors, err_shift),
    ):
        alarms, seconds = run(make, stream)
        print(
            f"  {name:<13} false alarms {alarms:3d} ({alarms / (N / 100_000):.2f} per 100k)   "
            f"{N / seconds / 1e3:7.0f}k events/s   "
            f"delay after a change: {delay(make, changed, 5000)} events"
        )


if __name__ == "__main__":
    main()
