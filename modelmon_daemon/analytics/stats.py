"""Feature statistics in MLRun's `feature_stats` format, and vectorized binning.

A histogram is `[counts, edges]`. Reference histograms have 20 equal-width bins over
[min, max]; padding adds one bin on each side whose outer edge is -/+ sys.float_info.max,
so every value of a later window falls in some bin. All functions here are pure.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

DEFAULT_BINS = 20
FLOAT_MAX = sys.float_info.max
STAT_KEYS = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")

FeatureStats = dict[str, dict[str, Any]]


def is_padded(edges: Sequence[float]) -> bool:
    return len(edges) >= 2 and edges[0] == -FLOAT_MAX and edges[-1] == FLOAT_MAX


def pad_hist(hist: Sequence[Sequence[float]]) -> list[list[float]]:
    """MLRun's pad_hist as a pure function: padding a padded histogram changes nothing."""
    counts, edges = [list(hist[0]), list(hist[1])]
    if len(edges) != len(counts) + 1:
        raise ValueError(f"histogram has {len(counts)} counts but {len(edges)} edges")
    if is_padded(edges):
        return [counts, edges]
    return [[0, *counts, 0], [-FLOAT_MAX, *edges, FLOAT_MAX]]


def pad_feature_stats(stats: Mapping[str, Mapping[str, Any]]) -> FeatureStats:
    out: FeatureStats = {}
    for name, feature in stats.items():
        feature = dict(feature)
        if "hist" in feature:
            feature["hist"] = pad_hist(feature["hist"])
        out[name] = feature
    return out


def _finite_or_none(value: float) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)


QUARTILES = np.array([0.25, 0.5, 0.75])  # interpolated; min and max are order statistics


def _lerp(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """numpy's own linear interpolation for quantiles, so results are bit-identical to
    np.percentile (a + (b - a) t, computed from b for t >= 0.5)."""
    diff = b - a
    out = a + diff * t
    high = t >= 0.5
    out[high] = (b - diff * (1 - t))[high]
    return np.where(a == b, a, out)


def percentile(values: np.ndarray, q: float) -> float:
    """np.percentile(values, q) bit for bit (its linear method), from one vectorized sort:
    np.percentile partitions at two positions, numpy's scalar path (10x the time of the
    sort for a 1000-value window). `values` 1-d, without NaN, not empty."""
    ordered = np.sort(values)
    n = ordered.size
    quantile = q / 100
    virtual = (n - 1) * quantile  # numpy's virtual index for its linear method
    if virtual >= n - 1:
        return float(ordered[-1])
    if virtual < 0:
        return float(ordered[0])
    previous = math.floor(virtual)
    pair = ordered[previous : previous + 2]
    return float(_lerp(pair[:1], pair[1:], np.array([virtual - previous]))[0])


def describe_columns(matrix: np.ndarray) -> list[dict[str, Any]]:
    """count, mean, std (ddof=1, as pandas), min, quartiles, max per column; NaN = missing.

    All columns at once: one sort of the matrix (NaN sort last), quartiles by numpy's
    linear method on each column's valid prefix, so the numbers equal np.percentile's;
    min and max are each column's first and last valid value. With no value missing,
    mean and std per contiguous column (pandas' numbers, to the bit)."""
    n_rows, n_cols = matrix.shape
    if n_rows == 0:
        return [{"count": 0} for _ in range(n_cols)]
    valid = ~np.isnan(matrix)
    counts = valid.sum(axis=0)
    last = np.maximum(counts - 1, 0)
    position = QUARTILES[:, None] * last[None, :]  # (3, n_cols)
    lo = np.floor(position).astype(np.int64)
    hi = np.minimum(lo + 1, last[None, :])
    cols = np.arange(n_cols)
    # each column ordered as one contiguous row (down strided columns took 1.6x). A
    # full sort, not np.partition at the quartiles' six positions: numpy's vectorized
    # sort of a 1000 x 20 window takes 0.24 ms, the partition 0.54 ms (with more than
    # one position it takes the scalar path)
    rows = np.ascontiguousarray(matrix.T)
    complete = bool(valid.all())
    ordered = np.sort(rows, axis=1).T
    low, high = ordered[0], ordered[last, cols]  # each column's valid prefix
    with np.errstate(invalid="ignore", divide="ignore"):
        if complete:  # per contiguous column, summed pairwise as pandas sums a column
            mean = rows.mean(axis=1)
            std = rows.std(axis=1, ddof=1) if n_rows > 1 else np.full(n_cols, np.nan)
        else:
            filled = np.where(valid, matrix, 0.0)
            mean = filled.sum(axis=0) / counts
            squares = np.where(valid, (matrix - mean) ** 2, 0.0).sum(axis=0)
            std = np.sqrt(squares / (counts - 1))
        quartiles = _lerp(ordered[lo, cols], ordered[hi, cols], position - lo)
    out: list[dict[str, Any]] = []
    for j in range(n_cols):
        count = int(counts[j])
        if count == 0:
            out.append({"count": 0})
            continue
        q = quartiles[:, j]
        out.append(
            {
                "count": count,
                "mean": _finite_or_none(float(mean[j])),
                "std": _finite_or_none(float(std[j])) if count > 1 else None,
                "min": float(low[j]),
                "25%": float(q[0]),
                "50%": float(q[1]),
                "75%": float(q[2]),
                "max": float(high[j]),
            }
        )
    return out


def reference_feature_stats(
    matrix: np.ndarray, feature_names: Sequence[str], bins: int = DEFAULT_BINS
) -> FeatureStats:
    """MLRun-format stats from a reference matrix (rows x features, NaN = missing).

    The histogram is np.histogram(values, bins=20) (equal width over [min, max]), padded,
    so the stats match what MLRun computes for a model's training set.
    """
    if matrix.ndim != 2 or matrix.shape[1] != len(feature_names):
        raise ValueError(
            f"reference has {matrix.shape[1] if matrix.ndim == 2 else '?'} columns, "
            f"expected {len(feature_names)}"
        )
    described = describe_columns(matrix)
    stats: FeatureStats = {}
    for j, name in enumerate(feature_names):
        feature = described[j]
        col = matrix[:, j]
        col = col[~np.isnan(col)]
        if col.size == 0:
            raise ValueError(f"reference feature {name!r} has no values")
        counts, edges = np.histogram(col, bins=bins)
        feature["hist"] = pad_hist([counts.tolist(), edges.tolist()])
        stats[name] = feature
    return stats


def padded_edges_matrix(stats: Mapping[str, Mapping[str, Any]], names: Sequence[str]) -> np.ndarray:
    """The padded reference edges of each feature as one (features x edges) array."""
    rows = [pad_hist(stats[name]["hist"])[1] for name in names]
    width = {len(r) for r in rows}
    if len(width) != 1:
        raise ValueError("features have histograms with different bin counts")
    return np.asarray(rows, dtype=np.float64)


def reference_probabilities(
    stats: Mapping[str, Mapping[str, Any]], names: Sequence[str]
) -> np.ndarray:
    counts = np.asarray([pad_hist(stats[name]["hist"])[0] for name in names], dtype=np.float64)
    totals = counts.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(totals > 0, counts / np.where(totals > 0, totals, 1.0), 0.0)


def bin_indices(matrix: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Bin index of every value against each feature's edges, np.histogram's convention.

    Bins are [e_i, e_{i+1}) except the last, which is closed. The inner edges of a
    reference are equal width, so the index comes from arithmetic and is then corrected
    against the real edges, which makes it exact; a feature whose inner edges are not equal
    width falls back to a per-feature searchsorted (never a loop per row). NaN and +-inf get -1
    (np.histogram drops values outside the outer edges, and the outer edges are finite).
    """
    n_rows, n_features = matrix.shape
    n_bins = edges.shape[1] - 1
    out = np.empty((n_rows, n_features), dtype=np.int64)
    if n_rows == 0:
        return out
    inner = edges[:, 1:-1]
    lo = inner[:, 0]
    width = (inner[:, -1] - lo) / (inner.shape[1] - 1)
    diffs = np.diff(inner, axis=1)
    uniform = np.all(np.isclose(diffs, width[:, None], rtol=1e-6, atol=0.0), axis=1) & (width > 0)
    missing = ~np.isfinite(matrix)
    if uniform.all():
        with np.errstate(invalid="ignore", over="ignore"):
            guess = np.floor((matrix - lo) / width) + 1.0
        guess = np.nan_to_num(guess, nan=0.0, posinf=n_bins - 1, neginf=0.0)
        idx = np.clip(guess, 0, n_bins - 1).astype(np.int64)
        cols = np.broadcast_to(np.arange(n_features), idx.shape)
        left = edges[cols, idx]
        idx = np.where(matrix < left, idx - 1, idx)
        right = edges[cols, np.minimum(idx + 1, n_bins)]
        idx = np.where((matrix >= right) & (idx < n_bins - 1), idx + 1, idx)
        np.clip(idx, 0, n_bins - 1, out=idx)
        out[:] = idx
    else:
        for j in range(n_features):
            col_idx = np.searchsorted(edges[j], matrix[:, j], side="right") - 1
            col_idx[matrix[:, j] == edges[j, -1]] = n_bins - 1
            out[:, j] = np.clip(col_idx, 0, n_bins - 1)
    out[missing] = -1
    return out


BLOCK_ROWS = 4096
_NEAR_EDGE = 1e-9


def _uniform_inner(edges: np.ndarray) -> bool:
    inner = edges[:, 1:-1]
    width = (inner[:, -1] - inner[:, 0]) / (inner.shape[1] - 1)
    diffs = np.diff(inner, axis=1)
    close = np.isclose(diffs, width[:, None], rtol=1e-6, atol=0.0)
    return bool(np.all(close) and np.all(width > 0))


@dataclass(frozen=True)
class BinPlan:
    """What binned_counts derives from the edges alone: made once per reference, not once
    per window."""

    uniform: bool  # every feature's inner edges are equal width
    lo: np.ndarray  # first inner edge per feature
    inv_width: np.ndarray  # 1 / inner bin width per feature


def bin_plan(edges: np.ndarray) -> BinPlan:
    n_bins = edges.shape[1] - 1
    if not _uniform_inner(edges):
        return BinPlan(False, np.empty(0), np.empty(0))
    lo = np.ascontiguousarray(edges[:, 1])
    return BinPlan(True, lo, (n_bins - 2) / (edges[:, -2] - lo))


def binned_counts(matrix: np.ndarray, edges: np.ndarray, plan: BinPlan | None = None) -> np.ndarray:
    """Histogram counts of every feature at once (np.histogram's bins, exactly).

    Reference edges are equal width inside the padding, so a value's bin is arithmetic:
    1 + floor((x - min) / width), clipped to the padding bins. The matrix is processed in
    cache-sized row blocks; each block is one bincount over feature*bins + bin. Values
    within 1e-9 of a bin edge (where rounding could disagree with np.histogram) are checked
    against the real edges. NaN and +-inf are not counted (np.histogram drops values
    outside the finite outer edges)."""
    n_features = edges.shape[0]
    n_bins = edges.shape[1] - 1
    if matrix.shape[0] == 0:
        return np.zeros((n_features, n_bins), dtype=np.int64)
    plan = plan or bin_plan(edges)
    if not plan.uniform:
        idx = bin_indices(matrix, edges)
        flat = idx + (np.arange(n_features, dtype=np.int64) * n_bins)[None, :]
        flat = flat[idx >= 0]
        return np.bincount(flat, minlength=n_features * n_bins).reshape(n_features, n_bins)
    lo, inv_width = plan.lo, plan.inv_width
    stride = n_bins + 1  # one extra bin per feature collects the values not counted
    offsets = np.arange(n_features, dtype=np.int64) * stride
    counts = np.zeros(n_features * stride, dtype=np.int64)
    block = min(BLOCK_ROWS, matrix.shape[0])
    t_buf = np.empty((block, n_features))
    i_buf = np.empty((block, n_features), dtype=np.int64)
    for start in range(0, matrix.shape[0], block):
        x = matrix[start : start + block]
        t, idx = t_buf[: x.shape[0]], i_buf[: x.shape[0]]
        with np.errstate(invalid="ignore", over="ignore"):
            np.subtract(x, lo, out=t)
            t *= inv_width
            t += 1.0
            near = np.abs(t - np.rint(t)) < _NEAR_EDGE  # rounding could matter only here
            np.clip(t, 0, n_bins - 1, out=t)
            idx[...] = t  # truncation is floor here: t >= 0
        if near.any():
            rows, cols = np.nonzero(near)
            values = x[rows, cols]
            k = idx[rows, cols]
            k = np.where(values < edges[cols, k], k - 1, k)
            k = np.where(
                (values >= edges[cols, np.minimum(k + 1, n_bins)]) & (k < n_bins - 1), k + 1, k
            )
            idx[rows, cols] = np.clip(k, 0, n_bins - 1)
        missing = ~np.isfinite(x)
        if missing.any():
            idx[missing] = n_bins
        idx += offsets
        counts += np.bincount(idx.ravel(), minlength=n_features * stride)
    return counts.reshape(n_features, stride)[:, :n_bins]


def current_feature_stats(
    matrix: np.ndarray,
    names: Sequence[str],
    edges: Sequence[np.ndarray],
    counts: Sequence[np.ndarray],
) -> FeatureStats:
    """A window's stats in the reference's format, its histogram on the reference edges."""
    described = describe_columns(matrix)
    stats: FeatureStats = {}
    for j, name in enumerate(names):
        feature = described[j]
        feature["hist"] = [
            np.asarray(counts[j]).astype(int).tolist(),
            np.asarray(edges[j]).tolist(),
        ]
        stats[name] = feature
    return stats
