"""Drift of categorical values (pure): value counts against the reference's, over the
union of categories. Strings and integers are both categories (1, 1.0 and True are the
same category). Unseen categories are reported; chi-square compares the window's counts
with the reference proportions (unseen categories get a small expected share, 0.5 of one
reference row, so the test stays defined)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from modelmon_daemon.analytics.distances import (
    hellinger_distance,
    jensen_shannon_divergence,
    total_variance_distance,
)


def category(value: Any) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def category_counts(values: Iterable[Any]) -> dict[str, int]:
    """Counts per category; None and NaN are missing. Counted raw first (one C pass), then
    the few distinct values are normalized."""
    out: dict[str, int] = {}
    for value, n in Counter(values).items():
        if value is None or (isinstance(value, float) and value != value):
            continue
        key = category(value)
        out[key] = out.get(key, 0) + n
    return out


# unseen categories listed by name in a result (the first, in sorted order); all are
# counted. An identifier-like column can bring a new value on every row: its list would
# make every result row, Parquet file and notification of the window that large
MAX_LISTED_UNSEEN = 20


def categorical_drift(current: dict[str, int], reference: dict[str, int]) -> dict[str, Any]:
    categories = sorted(set(reference) | set(current))
    t = np.array([current.get(c, 0) for c in categories], dtype=np.float64)
    u = np.array([reference.get(c, 0) for c in categories], dtype=np.float64)
    n, m = t.sum(), u.sum()
    if n == 0 or m == 0:
        return {"n": int(n), "categories": categories}
    tp, up = t / n, u / m
    unseen = sorted(c for c in current if c not in reference)
    expected = np.where(u > 0, u, 0.5) / (m + 0.5 * np.sum(u == 0)) * n
    chi2, p_value = scipy_stats.chisquare(t, expected * n / expected.sum())
    tvd = float(total_variance_distance(tp, up)[0])
    hellinger = float(hellinger_distance(tp, up)[0])
    return {
        "n": int(n),
        "tvd": tvd,
        "hellinger": hellinger,
        "drift": (tvd + hellinger) / 2.0,
        "js": float(jensen_shannon_divergence(tp, up)[0]),
        "chi2": float(chi2),
        "p_value": float(p_value),
        "unseen": unseen[:MAX_LISTED_UNSEEN],
        "unseen_count": len(unseen),
        "categories": categories,
    }
