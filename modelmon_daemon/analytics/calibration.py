"""Thresholds calibrated to the window size, so alerts can be trusted.

Under "no drift", a window of n rows is a sample of n values from the reference
distribution; at the bin level that is a multinomial draw with the reference's bin
probabilities. Drawing B such windows (vectorized, seeded by the endpoint) and computing
general_drift for each gives its distribution on stationary data at exactly this n: the
99th percentile becomes `detected` and the 95th `potential`, so a stationary window is
`detected` in at most about 1% of windows (5% potential), whatever n is. Thresholds are
never set below the configured ones.
"""

from __future__ import annotations

import hashlib

import numpy as np

from modelmon_daemon.analytics.distances import hellinger_distance, total_variance_distance

BOOTSTRAP_WINDOWS = 400


def null_general_drift(
    reference: list[np.ndarray], n: int, seed: int, windows: int = BOOTSTRAP_WINDOWS
) -> np.ndarray:
    """general_drift of `windows` stationary windows of n rows (one value per window)."""
    rng = np.random.default_rng(seed)
    per_feature_tvd = []
    per_feature_hel = []
    for u in reference:
        counts = rng.multinomial(n, u, size=windows).astype(np.float64)
        t = counts / n
        per_feature_tvd.append(total_variance_distance(t, np.broadcast_to(u, t.shape)))
        per_feature_hel.append(hellinger_distance(t, np.broadcast_to(u, t.shape)))
    tvd = np.mean(per_feature_tvd, axis=0)
    hel = np.mean(per_feature_hel, axis=0)
    return (tvd + hel) / 2.0


def endpoint_seed(uid: str, n: int) -> int:
    return int.from_bytes(hashlib.sha1(f"{uid}:{n}".encode()).digest()[:8], "little")


def calibrated_thresholds(
    reference: list[np.ndarray], n: int, uid: str, potential: float, detected: float
) -> tuple[float, float]:
    """(potential, detected) for a window of n rows: the 95th / 99th percentile of
    general_drift on bootstrapped stationary windows, at least the configured values."""
    null = null_general_drift(reference, n, endpoint_seed(uid, n))
    return (
        max(potential, float(np.quantile(null, 0.95))),
        max(detected, float(np.quantile(null, 0.99))),
    )
