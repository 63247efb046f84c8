"""Histogram distances between a current (t) and a reference (u) distribution.

Every function takes (features x bins) probability arrays and returns one value per
feature, so all features of a window are computed in one numpy pass. The formulas are
MLRun's, including KLD's 1e-4 stand-in for empty expected bins and natural log.
"""

from __future__ import annotations

import numpy as np

KLD_ZERO_SCALING = 1e-4


def _2d(p: np.ndarray) -> np.ndarray:
    p = np.asarray(p, dtype=np.float64)
    return p[None, :] if p.ndim == 1 else p


def total_variance_distance(t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """TVD = sum|t - u| / 2."""
    return np.sum(np.abs(_2d(t) - _2d(u)), axis=1) / 2.0


def hellinger_distance(t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Hellinger = sqrt(max(1 - sum sqrt(t*u), 0))."""
    bc = np.sum(np.sqrt(_2d(t) * _2d(u)), axis=1)
    return np.sqrt(np.maximum(1.0 - bc, 0.0))


def _kl(actual: np.ndarray, expected: np.ndarray, zero_scaling: float) -> np.ndarray:
    expected = np.where(expected != 0, expected, zero_scaling)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        terms = np.where(
            actual != 0, actual * np.log(np.where(actual != 0, actual, 1.0) / expected), 0.0
        )
    return np.sum(terms, axis=1)


def kl_divergence(
    t: np.ndarray, u: np.ndarray, zero_scaling: float = KLD_ZERO_SCALING
) -> np.ndarray:
    """Symmetric KLD = KL(t||u) + KL(u||t), terms with a_i = 0 skipped."""
    t2, u2 = _2d(t), _2d(u)
    return _kl(t2, u2, zero_scaling) + _kl(u2, t2, zero_scaling)


def probabilities(counts: np.ndarray) -> np.ndarray:
    """counts / non-null count per feature; an empty feature gives all zeros."""
    counts = _2d(counts)
    totals = counts.sum(axis=1, keepdims=True)
    return np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0)
