"""Confidence-based performance estimation: exact expectations on constructed inputs, and
scikit-learn as the oracle for isotonic calibration and ROC AUC."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from modelmon_daemon.analytics.estimation import (
    calibrate_rows,
    cross_fitted_ece,
    estimate_binary,
    estimate_multiclass,
    expected_binary_counts,
    expected_calibration_error,
    expected_roc_auc,
    fit_estimator,
    fit_isotonic,
    metrics_from_counts,
)


def test_isotonic_matches_scikit_learn_with_ties_and_clipping() -> None:
    rng = np.random.default_rng(3)
    scores = np.round(rng.random(2000), 2)  # many ties
    outcomes = (rng.random(2000) < scores**2).astype(float)
    curve = fit_isotonic(scores, outcomes)
    oracle = IsotonicRegression(out_of_bounds="clip").fit(scores, outcomes)
    probe = np.r_[-0.5, np.linspace(0, 1, 501), 1.5]
    np.testing.assert_allclose(curve(probe), oracle.predict(probe), atol=1e-12)


def test_perfectly_calibrated_scores_give_the_expected_confusion_matrix_exactly() -> None:
    # reference: at score 0.2 exactly 20% positives, at 0.8 exactly 80%
    ref_scores = np.r_[np.full(100, 0.2), np.full(100, 0.8)]
    ref_outcomes = np.r_[np.ones(20), np.zeros(80), np.ones(80), np.zeros(20)]
    curve = fit_isotonic(ref_scores, ref_outcomes)
    assert curve(np.array([0.2, 0.8])).tolist() == [0.2, 0.8]
    # a window of 30 rows at 0.8 (predicted 1) and 70 at 0.2 (predicted 0)
    window = np.r_[np.full(30, 0.8), np.full(70, 0.2)]
    p = curve(window)
    counts = expected_binary_counts(p, window >= 0.5)
    assert counts == pytest.approx({"tp": 24.0, "fp": 6.0, "fn": 14.0, "tn": 56.0}, abs=1e-12)
    metrics = metrics_from_counts(counts)
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["precision"] == pytest.approx(24 / 30)
    assert metrics["recall"] == pytest.approx(24 / 38)
    assert metrics["f1"] == pytest.approx(48 / (48 + 6 + 14))


def test_known_labels_give_the_realized_metrics() -> None:
    """p = the true label (certainty): every estimate equals scikit-learn's realized value."""
    rng = np.random.default_rng(5)
    y = (rng.random(500) < 0.3).astype(int)
    scores = np.round(np.clip(0.3 * y + rng.normal(0.4, 0.2, 500), 0, 1), 2)
    predicted = scores >= 0.5
    est = estimate_binary(y.astype(float), predicted, scores, seed=1)
    assert est["accuracy"].value == pytest.approx(np.mean(predicted == y))
    assert est["precision"].value == pytest.approx(precision_score(y, predicted))
    assert est["recall"].value == pytest.approx(recall_score(y, predicted))
    assert est["f1"].value == pytest.approx(f1_score(y, predicted))
    assert est["roc_auc"].value == pytest.approx(roc_auc_score(y, scores))
    assert expected_roc_auc(y.astype(float), scores) == pytest.approx(roc_auc_score(y, scores))
    # labels are certain: no sampling error
    for e in est.values():
        assert e.lower == pytest.approx(e.value) and e.upper == pytest.approx(e.value)


def test_bands_cover_the_realized_value_of_a_calibrated_model() -> None:
    """Labels drawn from the calibrated probabilities land inside the 95% band about 95%
    of the time (seeded: the count is exact)."""
    rng = np.random.default_rng(11)
    scores = rng.random(400)
    predicted = scores >= 0.5
    est = estimate_binary(scores, predicted, scores, seed=2)
    inside = {k: 0 for k in est}
    trials = 300
    for _ in range(trials):
        y = (rng.random(400) < scores).astype(int)
        tp = float(np.sum(predicted & (y == 1)))
        realized = {
            "accuracy": np.mean(predicted == y),
            "precision": tp / predicted.sum(),
            "recall": tp / y.sum(),
            "f1": 2 * tp / (predicted.sum() + y.sum()),
            "roc_auc": roc_auc_score(y, scores),
        }
        for k, value in realized.items():
            inside[k] += est[k].lower <= value <= est[k].upper
    for k, count in inside.items():
        assert 0.90 <= count / trials <= 0.99, (k, count)
        assert est[k].lower < est[k].value < est[k].upper


def test_multiclass_known_labels_match_scikit_learn_macro() -> None:
    rng = np.random.default_rng(8)
    y = rng.integers(0, 3, 600)
    raw = rng.random((600, 3)) + np.eye(3)[y] * 0.6
    raw /= raw.sum(axis=1, keepdims=True)
    predicted = raw.argmax(axis=1)
    est = estimate_multiclass(np.eye(3)[y], predicted, raw, seed=4)
    assert est["accuracy"].value == pytest.approx(np.mean(predicted == y))
    assert est["precision"].value == pytest.approx(precision_score(y, predicted, average="macro"))
    assert est["recall"].value == pytest.approx(recall_score(y, predicted, average="macro"))
    assert est["f1"].value == pytest.approx(f1_score(y, predicted, average="macro"))
    oracle_auc = np.mean([roc_auc_score(y == c, raw[:, c]) for c in range(3)])
    assert est["roc_auc"].value == pytest.approx(oracle_auc)


def test_calibrated_rows_sum_to_one() -> None:
    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 300)
    raw = rng.random((300, 3))
    curves = [fit_isotonic(raw[:, c], (y == c).astype(float)) for c in range(3)]
    p = calibrate_rows(curves, raw)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)


def test_expected_calibration_error_on_constructed_bins() -> None:
    # 10 rows at 0.05 with 1 positive (gap 0.05), 10 at 0.95 with 5 positives (gap 0.45)
    p = np.r_[np.full(10, 0.05), np.full(10, 0.95)]
    o = np.r_[np.ones(1), np.zeros(9), np.ones(5), np.zeros(5)]
    assert expected_calibration_error(p, o) == pytest.approx((10 * 0.05 + 10 * 0.45) / 20)


def test_calibration_check_flags_an_overconfident_model() -> None:
    rng = np.random.default_rng(9)
    truth = rng.random(4000)
    y = (rng.random(4000) < truth).astype(int)
    labels = [str(v) for v in y]
    good = fit_estimator(["1"], truth, labels, [str(int(t >= 0.5)) for t in truth], 0.1)
    overconfident = np.clip((truth - 0.5) * 3 + 0.5, 0, 1)
    bad = fit_estimator(["1"], overconfident, labels, [str(int(t >= 0.5)) for t in truth], 0.1)
    assert not good["poorly_calibrated"] and good["reference_ece"] < 0.05
    assert bad["poorly_calibrated"] and bad["reference_ece"] > 0.1
    # recalibration repairs it out of sample
    assert cross_fitted_ece(overconfident, y) < 0.05
    assert good["reference_accuracy"] == pytest.approx(np.mean((truth >= 0.5) == y))


def test_an_always_right_model_is_estimated_right() -> None:
    y = np.r_[np.zeros(500), np.ones(500)]
    scores = np.r_[np.linspace(0.0, 0.3, 500), np.linspace(0.7, 1.0, 500)]
    curve = fit_isotonic(scores, y)
    window = np.r_[np.linspace(0.05, 0.25, 100), np.linspace(0.75, 0.95, 100)]
    est = estimate_binary(curve(window), window >= 0.5, window, seed=0)
    for e in est.values():
        assert e.value == 1.0 and e.lower == 1.0 and e.upper == 1.0
