import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon  # noqa: F401  (scipy is a dependency)

from modelmon_daemon.analytics.distances import (
    hellinger_distance,
    kl_divergence,
    probabilities,
    total_variance_distance,
)

U = np.array([0, 1 / 6, 1 / 3, 1 / 2])
T = np.array([1 / 2, 1 / 3, 1 / 6, 0])


def test_golden_values_from_mlrun():
    assert total_variance_distance(T, U)[0] == pytest.approx(0.666666, abs=1e-6)
    assert hellinger_distance(T, U)[0] == pytest.approx(0.727045, abs=1e-6)
    assert kl_divergence(T, U)[0] == pytest.approx(8.748242, abs=1e-6)


def test_identical_distributions_give_zero():
    rng = np.random.default_rng(1)
    p = probabilities(rng.integers(0, 50, size=(5, 22)).astype(float))
    assert np.allclose(total_variance_distance(p, p), 0)
    assert np.allclose(hellinger_distance(p, p), 0, atol=1e-7)
    assert np.allclose(kl_divergence(p, p), 0)


def test_every_metric_is_symmetric():
    rng = np.random.default_rng(2)
    t = probabilities(rng.integers(0, 9, size=(7, 22)).astype(float))
    u = probabilities(rng.integers(0, 9, size=(7, 22)).astype(float))
    for metric in (total_variance_distance, hellinger_distance, kl_divergence):
        assert np.allclose(metric(t, u), metric(u, t))


def test_vectorized_rows_equal_one_at_a_time():
    rng = np.random.default_rng(3)
    t = probabilities(rng.integers(0, 9, size=(6, 22)).astype(float))
    u = probabilities(rng.integers(0, 9, size=(6, 22)).astype(float))
    for metric in (total_variance_distance, hellinger_distance, kl_divergence):
        together = metric(t, u)
        apart = [metric(t[i], u[i])[0] for i in range(6)]
        assert np.allclose(together, apart)


def test_kld_uses_1e4_for_empty_expected_bins_and_natural_log():
    t = np.array([1.0, 0.0])
    u = np.array([0.0, 1.0])
    # KL(t||u) = 1*ln(1/1e-4); KL(u||t) the same
    assert kl_divergence(t, u)[0] == pytest.approx(2 * np.log(1e4))


def test_hellinger_never_nan_when_rounding_pushes_past_one():
    p = np.full((1, 3), 1 / 3)
    assert np.isfinite(hellinger_distance(p, p)).all()


def test_probabilities_of_empty_feature_are_zero():
    assert probabilities(np.zeros((1, 4))).tolist() == [[0, 0, 0, 0]]
