import sys

import numpy as np
import pytest

from modelmon_daemon.analytics.stats import (
    FLOAT_MAX,
    bin_indices,
    binned_counts,
    pad_hist,
    padded_edges_matrix,
    reference_feature_stats,
)


def test_padding_adds_two_outer_bins():
    counts, edges = pad_hist([[1, 2], [0.0, 1.0, 2.0]])
    assert counts == [0, 1, 2, 0]
    assert edges == [-sys.float_info.max, 0.0, 1.0, 2.0, sys.float_info.max]


def test_padding_is_idempotent():
    once = pad_hist([[1, 2], [0.0, 1.0, 2.0]])
    assert pad_hist(once) == once


def test_padding_refuses_mismatched_histogram():
    with pytest.raises(ValueError):
        pad_hist([[1, 2, 3], [0.0, 1.0]])


def test_reference_stats_match_numpy_and_pandas_conventions():
    rng = np.random.default_rng(0)
    matrix = rng.normal(size=(500, 2))
    matrix[3, 1] = np.nan
    stats = reference_feature_stats(matrix, ["a", "b"])
    a = matrix[:, 0]
    counts, edges = np.histogram(a, bins=20)
    assert stats["a"]["hist"][0] == [0, *counts.tolist(), 0]
    assert stats["a"]["hist"][1] == [-FLOAT_MAX, *edges.tolist(), FLOAT_MAX]
    assert len(stats["a"]["hist"][1]) == 23
    assert stats["a"]["std"] == pytest.approx(a.std(ddof=1))
    assert stats["a"]["50%"] == pytest.approx(np.median(a))
    assert stats["b"]["count"] == 499


@pytest.mark.parametrize("seed", range(5))
def test_vectorized_binning_equals_np_histogram(seed):
    rng = np.random.default_rng(seed)
    ref = rng.normal(size=(1000, 4)) * [1, 10, 0.001, 1e6] + [0, 5, 3, -2e6]
    names = list("abcd")
    stats = reference_feature_stats(ref, names)
    edges = padded_edges_matrix(stats, names)
    current = rng.normal(size=(3000, 4)) * [1.5, 10, 0.002, 1e6] + [0.3, 5, 3, -2e6]
    # values exactly on edges, beyond min/max and missing
    current[:23, 0] = edges[0]
    current[23:46, 1] = edges[1]
    current[50, 2] = np.nan
    counts = binned_counts(current, edges)
    for j in range(4):
        col = current[:, j]
        expected, _ = np.histogram(col[~np.isnan(col)], bins=edges[j])
        assert counts[j].tolist() == expected.tolist()


def test_binning_falls_back_for_unequal_edges():
    edges = np.array([[-FLOAT_MAX, 0.0, 1.0, 5.0, 6.0, FLOAT_MAX]])
    values = np.array([[-1.0], [0.0], [0.5], [1.0], [4.9], [5.0], [6.0], [7.0], [np.nan]])
    idx = bin_indices(values, edges)
    expected = [np.searchsorted(edges[0], v, side="right") - 1 for v in values[:-1, 0]]
    assert idx[:-1, 0].tolist() == expected
    assert idx[-1, 0] == -1


def test_reference_feature_without_values_is_refused():
    with pytest.raises(ValueError, match="no values"):
        reference_feature_stats(np.array([[np.nan], [np.nan]]), ["a"])


def test_describe_columns_equals_numpy_percentile_bit_for_bit():
    """The vectorized quartiles (one sort for all columns) against np.percentile, column
    by column, with missing values, ties and extreme scales, on small windows and
    1000-row ones."""
    from modelmon_daemon.analytics.stats import describe_columns

    rng = np.random.default_rng(0)
    for trial in range(200):
        n_rows = 1000 if trial % 10 == 1 else rng.integers(1, 50)
        x = rng.normal(size=(n_rows, rng.integers(1, 6)))
        x *= rng.choice([1.0, 1e-9, 1e9])
        if trial % 3 == 0:
            x[rng.random(size=x.shape) < 0.3] = np.nan
        if trial % 7 == 0:
            x = np.round(x)
        described = describe_columns(x)
        for j, d in enumerate(described):
            col = x[~np.isnan(x[:, j]), j]
            if not len(col):
                assert d == {"count": 0}
                continue
            expected = [float(v) for v in np.percentile(col, [0, 25, 50, 75, 100])]
            assert [d[k] for k in ("min", "25%", "50%", "75%", "max")] == expected
            assert d["mean"] == pytest.approx(col.mean(), rel=1e-12)
            assert d["std"] == (pytest.approx(col.std(ddof=1)) if len(col) > 1 else None)


def test_describe_columns_of_complete_columns_equals_pandas_describe_bit_for_bit():
    """With no value missing (the common window): every number equals pandas' describe
    of the same column to the bit, the mean and std too (summed per contiguous column,
    as pandas does); min and max are the sorted ends, and a column holding an infinity
    still gives np.percentile's quartiles and its true min and max."""
    import pandas as pd

    from modelmon_daemon.analytics.stats import describe_columns

    rng = np.random.default_rng(5)
    keys = ("count", "mean", "std", "min", "25%", "50%", "75%", "max")
    for trial in range(60):
        n_rows = 1000 if trial % 4 == 0 else int(rng.integers(2, 60))
        x = rng.normal(size=(n_rows, int(rng.integers(1, 8)))) * rng.choice([1.0, 1e-9, 1e9])
        if trial % 5 == 0:
            x = np.round(x)
        described = describe_columns(x)
        expected = pd.DataFrame(x).describe()
        for j, d in enumerate(described):
            assert [d[k] for k in keys] == [float(expected[j][k]) for k in keys], (trial, j)
    x = rng.normal(size=(100, 3))
    x[7, 1], x[9, 2] = np.inf, -np.inf
    for j, d in enumerate(describe_columns(x)):
        col = x[:, j]
        middle = [float(v) for v in np.percentile(col, [25, 50, 75])]
        expected = [float(col.min()), *middle, float(col.max())]
        assert [d[k] for k in ("min", "25%", "50%", "75%", "max")] == expected


def test_describe_columns_reports_an_infinite_min_or_max_with_values_missing():
    from modelmon_daemon.analytics.stats import describe_columns

    x = np.array([[1.0, np.nan], [-np.inf, 2.0], [np.nan, np.inf], [3.0, 0.5]])
    first, second = describe_columns(x)
    assert (first["count"], first["min"], first["max"]) == (3, -np.inf, 3.0)
    assert (second["count"], second["min"], second["max"]) == (3, 0.5, np.inf)


def test_percentile_equals_numpy_bit_for_bit():
    """The sort-based percentile against np.percentile for many sizes, scales, ties and
    quantiles (the 95th of latencies, the quartiles, the ends)."""
    from modelmon_daemon.analytics.stats import percentile

    rng = np.random.default_rng(11)
    for trial in range(400):
        n = int(rng.integers(1, 2000)) if trial % 2 else int(rng.integers(1, 12))
        x = rng.exponential(1000.0, size=n) * rng.choice([1.0, 1e-9, 1e12])
        if trial % 5 == 0:
            x = np.round(x / 100.0)
        for q in (95, 0, 100, 25, 50, 75, 99.9, float(rng.uniform(0, 100))):
            assert percentile(x, q) == float(np.percentile(x, q)), (trial, n, q)
