"""Every drift-metrics measure against an independent computation on random inputs."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import ks_2samp, wasserstein_distance

from modelmon_daemon.analytics.distances import (
    bin_positions,
    jensen_shannon_divergence,
    kolmogorov_smirnov_binned,
    population_stability_index,
    probabilities,
    wasserstein_binned,
)
from modelmon_daemon.analytics.stats import padded_edges_matrix, reference_feature_stats
from modelmon_daemon.applications.base import MonitoringContext, Result
from modelmon_daemon.applications.drift_metrics import DriftMetricsApplication, drift_measures
from modelmon_daemon.core.enums import ResultStatus
from tests.helpers import make_batch


def random_pair(seed, bins=22, zeros=True):
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 20, size=(6, bins)).astype(float)
    u = rng.integers(0, 20, size=(6, bins)).astype(float)
    if zeros:
        t[:, 0] = 0
        u[:, -1] = 0
    return probabilities(t), probabilities(u)


@pytest.mark.parametrize("seed", range(5))
def test_js_is_scipys_squared_distance_in_base_2(seed):
    t, u = random_pair(seed)
    ours = jensen_shannon_divergence(t, u)
    expected = [jensenshannon(t[i], u[i], base=2) ** 2 for i in range(len(t))]
    assert ours == pytest.approx(expected, abs=1e-12)
    assert ((ours >= 0) & (ours <= 1)).all()
    assert jensen_shannon_divergence(np.array([1.0, 0]), np.array([0, 1.0]))[0] == pytest.approx(1)


@pytest.mark.parametrize("seed", range(5))
def test_psi_matches_the_written_out_formula(seed):
    t, u = random_pair(seed)
    ours = population_stability_index(t, u)
    for i in range(len(t)):
        a, e = np.maximum(t[i], 1e-4), np.maximum(u[i], 1e-4)
        assert ours[i] == pytest.approx(
            sum((x - y) * np.log(x / y) for x, y in zip(a, e, strict=True))
        )
    assert population_stability_index(t, t) == pytest.approx(0)


@pytest.mark.parametrize("seed", range(5))
def test_wasserstein_and_ks_equal_scipy_on_samples_at_bin_positions(seed):
    rng = np.random.default_rng(seed)
    stats = reference_feature_stats(rng.normal(size=(500, 1)), ["x"])
    edges = padded_edges_matrix(stats, ["x"])
    positions = bin_positions(edges)[0]
    t_counts = rng.integers(0, 15, size=22)
    u_counts = np.array(stats["x"]["hist"][0])
    t, u = (
        probabilities(t_counts[None, :].astype(float)),
        probabilities(u_counts[None, :].astype(float)),
    )
    assert wasserstein_binned(t, u, positions[None, :])[0] == pytest.approx(
        wasserstein_distance(positions, positions, t[0], u[0]), rel=1e-9
    )
    a, b = np.repeat(positions, t_counts), np.repeat(positions, u_counts)
    assert kolmogorov_smirnov_binned(t, u)[0] == pytest.approx(ks_2samp(a, b).statistic, abs=1e-12)


def test_application_share_of_drifted_features_and_min_sample_size():
    rng = np.random.default_rng(0)
    names = ["a", "b", "c", "d"]
    stats = reference_feature_stats(rng.normal(size=(3000, 4)), names)
    window = rng.normal(size=(1000, 4))
    window[:, :2] += 2.0  # half of the features move
    measures = drift_measures(window, names, stats)
    assert measures is not None
    assert measures["a"]["psi"] > 1 and measures["c"]["psi"] < 0.1
    assert measures["a"]["wasserstein"] == pytest.approx(2.0, rel=0.15)  # in reference sd

    def run(rows, **settings):
        batch = make_batch(np.zeros(len(rows)), rows)
        ctx = MonitoringContext(
            "drift-metrics",
            {"uid": "e", "feature_names": names, "feature_stats": stats},
            0,
            60,
            batch,
            settings,
        )
        return next(o for o in DriftMetricsApplication().do_tracking(ctx) if isinstance(o, Result))

    result = run(window)
    assert result.value == 0.5 and result.status is ResultStatus.detected
    assert result.extra_data["drifted"] == ["a", "b"]
    assert run(window, min_sample_size=5000).status is ResultStatus.irrelevant
    stationary = run(rng.normal(size=(2000, 4)))
    assert stationary.value == 0 and stationary.status is ResultStatus.no_detection
