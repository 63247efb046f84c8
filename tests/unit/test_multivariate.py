"""PCA reconstruction error catches a broken correlation that no single feature shows."""

import numpy as np

from modelmon_daemon.analytics.multivariate import fit_pca
from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.applications.base import MonitoringContext, Result
from modelmon_daemon.applications.histogram_data_drift import histogram_drift
from modelmon_daemon.applications.multivariate_drift import MultivariateDriftApplication
from modelmon_daemon.core.enums import ResultStatus
from tests.helpers import make_batch

NAMES = ["x", "y", "z"]


def correlated(rng, n, broken=False):
    x = rng.normal(size=n)
    # y has the same marginal either way; only its link to x breaks
    y = rng.normal(scale=np.sqrt(1.01), size=n) if broken else x + 0.1 * rng.normal(size=n)
    return np.column_stack([x, y, rng.normal(size=n)])


def result(model, window):
    ctx = MonitoringContext(
        "multivariate-drift",
        {"uid": "e", "feature_names": NAMES, "multivariate": model},
        0,
        60,
        make_batch(np.zeros(len(window)), window),
        {},
    )
    return next(o for o in MultivariateDriftApplication().do_tracking(ctx) if isinstance(o, Result))


def test_broken_correlation_is_detected_where_marginals_look_fine():
    rng = np.random.default_rng(5)
    reference = correlated(rng, 5000)
    model = fit_pca(reference)
    assert model is not None and len(model["components"]) == 2
    broken = correlated(rng, 400, broken=True)
    stats = reference_feature_stats(reference, NAMES)
    marginal = histogram_drift(broken, NAMES, stats)
    assert marginal is not None and marginal.general_drift < 0.3  # no marginal alarm
    r = result(model, broken)
    assert r.status is ResultStatus.detected and r.extra_data["z"] > 20


def test_stationary_windows_stay_quiet():
    rng = np.random.default_rng(6)
    model = fit_pca(correlated(rng, 5000))
    zs = [result(model, correlated(rng, 200)).extra_data["z"] for _ in range(50)]
    assert max(zs) < 5
    assert sum(z >= 3 for z in zs) <= 2


def test_too_few_features_or_rows_give_no_model():
    rng = np.random.default_rng(7)
    assert fit_pca(rng.normal(size=(100, 1))) is None
    assert fit_pca(rng.normal(size=(5, 3))) is None
