"""Drift of one 100k x 20 window against a 100k-row reference: ms per window.

Baseline, measured in the same run: MLRun's way (np.histogram per feature on the padded
edges, then the distances per feature). Prints both and the speed-up ratio.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np

from modelmon_daemon.analytics.distances import (
    hellinger_distance,
    kl_divergence,
    total_variance_distance,
)
from modelmon_daemon.analytics.stats import current_feature_stats, reference_feature_stats
from modelmon_daemon.applications.histogram_data_drift import histogram_drift

ROWS, FEATURES, CATEGORICAL, REPEAT = 100_000, 20, 5, 7


def per_feature_baseline(window, names, stats):
    tvd, hel, kld = [], [], []
    for j, name in enumerate(names):
        counts_u, edges = stats[name]["hist"]
        u = np.asarray(counts_u, float) / np.sum(counts_u)
        counts, _ = np.histogram(window[:, j], bins=edges)
        t = counts / counts.sum()
        tvd.append(total_variance_distance(t, u)[0])
        hel.append(hellinger_distance(t, u)[0])
        kld.append(kl_divergence(t, u)[0])
    return (np.mean(tvd) + np.mean(hel)) / 2


def best_ms(fn, repeat=REPEAT):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return min(times), float(np.median(times))


def all_numeric_apps(window, names, stats, model):
    """Every built-in numeric drift application on one window, as the pool runs them."""
    from modelmon_daemon.applications.base import MonitoringContext
    from modelmon_daemon.applications.data_quality import DataQualityApplication
    from modelmon_daemon.applications.drift_metrics import DriftMetricsApplication
    from modelmon_daemon.applications.histogram_data_drift import HistogramDataDriftApplication
    from modelmon_daemon.applications.multivariate_drift import MultivariateDriftApplication
    from modelmon_daemon.core.records import ColumnBatch

    n = window.shape[0]
    batch = ColumnBatch(
        np.zeros(n),
        window,
        [],
        np.empty(n, dtype=object),
        np.full(n, np.nan),
        np.full(n, None, dtype=object),
    )
    endpoint = {
        "uid": "bench",
        "feature_names": names,
        "feature_stats": stats,
        "multivariate": model,
    }
    out = []
    for app in (
        HistogramDataDriftApplication(),
        DriftMetricsApplication(),
        DataQualityApplication(),
        MultivariateDriftApplication(),
    ):
        ctx = MonitoringContext(app.NAME, endpoint, 0.0, 600.0, batch, {})
        out += app.do_tracking(ctx)
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    names = [f"f{j}" for j in range(FEATURES)]
    reference = rng.normal(size=(ROWS, FEATURES))
    stats = reference_feature_stats(reference, names)
    window = rng.normal(0.1, 1.1, size=(ROWS, FEATURES))
    drift = histogram_drift(window, names, stats)
    assert drift is not None
    assert abs(drift.general_drift - per_feature_baseline(window, names, stats)) < 1e-12
    ours = best_ms(lambda: histogram_drift(window, names, stats))
    base = best_ms(lambda: per_feature_baseline(window, names, stats))
    with_stats = best_ms(lambda: current_feature_stats(window, names, drift.edges, drift.counts))
    print(f"window {ROWS} x {FEATURES}, reference {ROWS} rows, best/median of {REPEAT}")
    print(f"  vectorized histogram drift (TVD+Hellinger+KLD): {ours[0]:7.2f} / {ours[1]:7.2f} ms")
    print(f"  np.histogram per feature (baseline):            {base[0]:7.2f} / {base[1]:7.2f} ms")
    print(f"  speed-up vs baseline: {base[0] / ours[0]:.2f}x")
    label = "current_stats for the endpoint record:"
    print(f"  {label:<48}{with_stats[0]:7.2f} / {with_stats[1]:7.2f} ms")
    from modelmon_daemon.analytics.multivariate import fit_pca

    model = fit_pca(reference)
    every = best_ms(lambda: all_numeric_apps(window, names, stats, model), repeat=3)
    label = "all numeric apps (histogram, PSI/JS/W/KS, quality, PCA):"
    print(f"  {label:<48}{every[0]:7.2f} / {every[1]:7.2f} ms")
    from modelmon_daemon.applications.drift_metrics import drift_measures

    per_column = best_ms(lambda: drift_measures(window, names, stats))
    label = "drift-metrics (PSI, JS, Wasserstein, KS per column):"
    print(f"  {label:<48}{per_column[0]:7.2f} / {per_column[1]:7.2f} ms")
    from modelmon_daemon.analytics.categorical import category_counts
    from modelmon_daemon.applications.base import MonitoringContext
    from modelmon_daemon.applications.drift_metrics import categorical_measures
    from modelmon_daemon.core.records import ColumnBatch

    levels = np.array([f"c{k}" for k in range(10)], dtype=object)
    cat_names = [f"g{j}" for j in range(CATEGORICAL)]
    cat_ref = {j: levels[rng.integers(0, 10, ROWS)] for j in range(CATEGORICAL)}
    cat_now = {j: levels[rng.integers(0, 11, ROWS) % 10] for j in range(CATEGORICAL)}
    cat_stats = {
        n: {"kind": "categorical", "counts": category_counts(cat_ref[j].tolist())}
        for j, n in enumerate(cat_names)
    }
    n_rows = ROWS
    cat_batch = ColumnBatch(
        np.zeros(n_rows),
        np.full((n_rows, CATEGORICAL), np.nan),
        [],
        np.empty(n_rows, dtype=object),
        np.full(n_rows, np.nan),
        np.full(n_rows, None, dtype=object),
        0,
        cat_now,
    )
    cat_ctx = MonitoringContext(
        "drift-metrics",
        {"uid": "b", "feature_names": cat_names, "feature_stats": cat_stats},
        0,
        1,
        cat_batch,
        {},
    )
    categorical = best_ms(lambda: categorical_measures(cat_ctx), repeat=3)
    label = f"{CATEGORICAL} categorical features (TVD, Hellinger, JS, chi2):"
    print(f"  {label:<48}{categorical[0]:7.2f} / {categorical[1]:7.2f} ms")
    evidently_python = os.environ.get("EVIDENTLY_PYTHON")
    if evidently_python:  # a separate venv with Evidently; never a dependency here
        script = str(Path(__file__).with_name("evidently_preset.py"))
        out = subprocess.run(
            [evidently_python, script, str(ROWS), str(FEATURES), "2", str(CATEGORICAL)],
            capture_output=True,
            text=True,
            check=True,
        )
        evidently_ms = float(out.stdout.strip().splitlines()[-1])
        print(f"  Evidently DataDriftPreset, same data:          {evidently_ms:9.1f} ms")
        drift_only = per_column[0] + categorical[0]
        everything = every[0] + categorical[0]
        print(f"  per-column drift, all 25 features: {evidently_ms / drift_only:.0f}x faster")
        print(f"  every application, all 25 features: {evidently_ms / everything:.0f}x faster")
    else:
        print("  (set EVIDENTLY_PYTHON to a venv's python with evidently to compare)")


if __name__ == "__main__":
    main()
