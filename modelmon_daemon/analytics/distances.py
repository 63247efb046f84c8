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


PSI_EPSILON = 1e-4


def population_stability_index(
    t: np.ndarray, u: np.ndarray, epsilon: float = PSI_EPSILON
) -> np.ndarray:
    """PSI = sum (t' - u') ln(t' / u'), with t' = max(t, eps), u' = max(u, eps) so that an
    empty bin on either side stays finite. eps = 1e-4 (the same stand-in as KLD)."""
    t2, u2 = np.maximum(_2d(t), epsilon), np.maximum(_2d(u), epsilon)
    return np.sum((t2 - u2) * np.log(t2 / u2), axis=1)


def jensen_shannon_divergence(t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """JS in base 2 (0 = same, 1 = disjoint): 0.5 KL(t||m) + 0.5 KL(u||m), m = (t+u)/2.
    (scipy's jensenshannon returns its square root, the JS distance.)"""
    t2, u2 = _2d(t), _2d(u)
    m = (t2 + u2) / 2.0

    def kl(a: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            terms = np.where(
                a > 0, a * np.log2(np.where(a > 0, a, 1.0) / np.where(m > 0, m, 1.0)), 0.0
            )
        return np.sum(terms, axis=1)

    return np.clip(0.5 * kl(t2) + 0.5 * kl(u2), 0.0, 1.0)


def bin_positions(edges: np.ndarray) -> np.ndarray:
    """Where a bin's mass sits for distances on the value axis: the centre of each inner
    bin; the padding bins at the reference's min and max (their outer edges are infinite)."""
    edges = np.atleast_2d(np.asarray(edges, dtype=np.float64))
    centres = (edges[:, 1:] + edges[:, :-1]) / 2.0
    centres[:, 0] = edges[:, 1]
    centres[:, -1] = edges[:, -2]
    return centres


def wasserstein_binned(t: np.ndarray, u: np.ndarray, positions: np.ndarray) -> np.ndarray:
    """Earth mover's distance (W1) between the binned distributions, masses at
    `positions` (sorted per row): sum |CDF_t - CDF_u| * gap between positions."""
    cdf_gap = np.abs(np.cumsum(_2d(t), axis=1) - np.cumsum(_2d(u), axis=1))[:, :-1]
    return np.sum(cdf_gap * np.diff(np.atleast_2d(positions), axis=1), axis=1)


def kolmogorov_smirnov_binned(t: np.ndarray, u: np.ndarray) -> np.ndarray:
    """KS statistic on the bins: max |CDF_t - CDF_u| (the two-sample statistic of samples
    that sit at the bin positions)."""
    return np.max(np.abs(np.cumsum(_2d(t), axis=1) - np.cumsum(_2d(u), axis=1)), axis=1)
