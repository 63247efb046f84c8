"""Prediction drift for numeric and categorical outputs; categorical distances checked
against an independent computation (scipy's chi-square and JS)."""

import numpy as np
import pytest
from scipy.spatial.distance import jensenshannon
from scipy.stats import chisquare

from modelmon_daemon.analytics.categorical import categorical_drift, category_counts
from modelmon_daemon.applications.base import MonitoringContext, Result
from modelmon_daemon.applications.prediction_drift import (
    PredictionDriftApplication,
    prediction_stats,
)
from modelmon_daemon.core.enums import ResultStatus
from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.ingest.registration import build_spec


def batch(outputs):
    n = len(outputs)
    col = np.empty(n, dtype=object)
    col[:] = outputs
    return ColumnBatch(
        np.zeros(n),
        np.zeros((n, 1)),
        [col],
        np.array([str(i) for i in range(n)], dtype=object),
        np.full(n, np.nan),
        np.full(n, None, dtype=object),
    )


def run(stats, outputs):
    ctx = MonitoringContext(
        "prediction-drift",
        {"uid": "e", "feature_names": ["x"], "prediction_stats": stats},
        0,
        60,
        batch(outputs),
        {},
    )
    return next(o for o in PredictionDriftApplication().do_tracking(ctx) if isinstance(o, Result))


def test_categories_strings_and_integers_alike():
    assert category_counts([1, 1.0, True, "1", "a", None, float("nan")]) == {"1": 4, "a": 1}


def test_categorical_drift_against_scipy():
    reference = {"cat": 50, "dog": 30, "fish": 20}
    current = {"cat": 20, "dog": 40, "fish": 30, "bird": 10}
    found = categorical_drift(current, reference)
    cats = ["bird", "cat", "dog", "fish"]
    t = np.array([10, 20, 40, 30]) / 100
    u = np.array([0, 50, 30, 20]) / 100
    assert found["js"] == pytest.approx(jensenshannon(t, u, base=2) ** 2)
    assert found["tvd"] == pytest.approx(np.abs(t - u).sum() / 2)
    expected = np.array([0.5, 50, 30, 20]) / 100.5 * 100
    chi2, p = chisquare([10, 20, 40, 30], expected)
    assert (found["chi2"], found["p_value"]) == pytest.approx((chi2, p))
    assert found["unseen"] == ["bird"] and found["categories"] == cats


def test_classifier_outputs_drift():
    stats = prediction_stats([0] * 900 + [1] * 100)
    assert stats == {"kind": "categorical", "counts": {"0": 900, "1": 100}}
    same = run(stats, [0] * 90 + [1] * 10)
    assert same.value == pytest.approx(0) and same.status is ResultStatus.no_detection
    moved = run(stats, [0] * 10 + [1] * 90)
    assert moved.status is ResultStatus.detected and moved.extra_data["p_value"] < 1e-6


def test_numeric_outputs_use_a_padded_histogram():
    rng = np.random.default_rng(0)
    stats = prediction_stats(rng.normal(size=2000).tolist())
    assert stats["kind"] == "numeric" and len(stats["hist"][1]) == 23
    assert run(stats, rng.normal(size=500).tolist()).status is ResultStatus.no_detection
    assert run(stats, rng.normal(4, 1, size=500).tolist()).status is ResultStatus.detected


def test_registration_takes_reference_predictions():
    spec = build_spec(
        {
            "project": "p",
            "name": "m",
            "feature_names": ["x"],
            "reference": {"rows": [[1.0], [2.0], [3.0]], "predictions": ["a", "b", "a"]},
        },
        0,
    )
    assert spec.prediction_stats == {"kind": "categorical", "counts": {"a": 2, "b": 1}}
