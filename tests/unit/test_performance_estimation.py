"""Registration of a scored classifier and the performance-estimation application on
windows built in-process (the estimator's math is in test_estimation.py)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from modelmon_daemon.analytics.estimation import estimate_binary, fit_isotonic
from modelmon_daemon.applications.base import MonitoringContext
from modelmon_daemon.applications.performance_estimation import (
    PerformanceEstimationApplication,
    window_seed,
)
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.errors import ApiError
from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.ingest.registration import build_spec

SETTINGS = {"drop_potential": 0.05, "drop_detected": 0.1, "min_sample_size": 0}


def logistic_data(n: int, seed: int, scale: float = 1.0) -> dict[str, list]:
    """x ~ N(0, scale), P(y=1|x) = sigmoid(2x); the model's score is that probability."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, n)
    p = 1.0 / (1.0 + np.exp(-2.0 * x))
    y = (rng.random(n) < p).astype(int)
    return {
        "rows": [[float(v)] for v in x],
        "scores": p.tolist(),
        "predictions": (p >= 0.5).astype(int).tolist(),
        "labels": y.tolist(),
    }


def body(**extra):
    return {
        "uid": "clf",
        "project": "p",
        "name": "clf",
        "feature_names": ["x"],
        "label_names": ["prediction", "score"],
        "score_output": "score",
        **extra,
    }


def window(data: dict[str, list]) -> ColumnBatch:
    n = len(data["rows"])
    return ColumnBatch(
        timestamps=np.arange(n, dtype=float),
        features=np.asarray(data["rows"], dtype=float),
        outputs=[
            np.asarray(data["predictions"], dtype=float),
            np.asarray(data["scores"], dtype=float),
        ],
        request_ids=np.array([f"r{i}" for i in range(n)], dtype=object),
        latency_us=np.full(n, 1000.0),
        errors=np.array([None] * n, dtype=object),
    )


def run(spec, batch, start=0.0):
    context = MonitoringContext(
        "performance-estimation", spec.to_dict(), start, start + 60.0, batch, dict(SETTINGS)
    )
    return PerformanceEstimationApplication().do_tracking(context), context


def test_registration_fits_the_estimator_from_rows():
    ref = logistic_data(3000, seed=1)
    spec = build_spec(body(reference=ref), 0.0)
    est = spec.performance_estimator
    assert spec.model_type == "classification"
    assert spec.score_outputs == {"1": "score"}
    assert est["prediction_output"] == "prediction"
    assert est["reference_accuracy"] == pytest.approx(
        np.mean(np.asarray(ref["predictions"]) == np.asarray(ref["labels"]))
    )
    assert not est["poorly_calibrated"] and est["reference_ece"] < 0.05
    curve = fit_isotonic(np.asarray(ref["scores"]), np.asarray(ref["labels"], dtype=float))
    assert est["curves"] == [curve.to_dict()]


def test_registration_from_a_file_gives_the_same_estimator(tmp_path):
    ref = logistic_data(1000, seed=2)
    frame = pd.DataFrame(
        {
            "x": [r[0] for r in ref["rows"]],
            "p": ref["scores"],
            "pred": ref["predictions"],
            "y": ref["labels"],
        }
    )
    path = tmp_path / "ref.parquet"
    frame.to_parquet(path)
    from_file = build_spec(
        body(
            reference={
                "path": str(path),
                "score_column": "p",
                "prediction_column": "pred",
                "label_column": "y",
            }
        ),
        0.0,
    )
    from_rows = build_spec(body(reference=ref), 0.0)
    assert from_file.performance_estimator == from_rows.performance_estimator


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"score_output": "prob"}, "score_output"),
        ({"score_output": "score", "model_type": "regression"}, "score_output"),
        ({"reference": {"rows": [[1.0]], "scores": [0.5], "predictions": [1]}}, "reference.labels"),
        (
            {"reference": {"rows": [[1.0]], "scores": [0.5], "labels": [1], "predictions": [1, 0]}},
            "reference.predictions",
        ),
        (
            {"reference": {"rows": [[1.0]], "scores": ["high"], "labels": [1], "predictions": [1]}},
            "reference.scores[0]",
        ),
        ({"label_names": ["score"]}, "label_names"),
        ({"score_outputs": {"a": "score"}}, "score_outputs"),
    ],
)
def test_bad_registrations_name_the_field(extra, field):
    base = body(reference=logistic_data(50, seed=3))
    base.update(extra)
    if "score_outputs" in extra:
        base.pop("score_output")
    with pytest.raises(ApiError) as err:
        build_spec(base, 0.0)
    assert err.value.details["field"] == field


def test_window_estimate_is_the_calibrated_expectation_with_its_band():
    spec = build_spec(body(reference=logistic_data(5000, seed=4)), 0.0)
    current = logistic_data(1000, seed=5, scale=0.4)  # shifted towards the boundary
    outputs, context = run(spec, window(current), start=120.0)
    by_name = {o.name: o for o in outputs}
    assert set(by_name) == {
        "estimated_accuracy",
        "estimated_precision",
        "estimated_recall",
        "estimated_f1",
        "estimated_roc_auc",
    }
    scores = np.asarray(current["scores"])
    curve = fit_isotonic(
        np.asarray(logistic_data(5000, seed=4)["scores"]),
        np.asarray(logistic_data(5000, seed=4)["labels"], dtype=float),
    )
    expected = estimate_binary(curve(scores), scores >= 0.5, scores, window_seed("clf", 120.0))
    acc = by_name["estimated_accuracy"]
    assert acc.kind == ResultKind.model_performance
    assert acc.value == expected["accuracy"].value
    assert acc.extra_data["lower"] == expected["accuracy"].lower
    assert by_name["estimated_roc_auc"].extra_data["upper"] == expected["roc_auc"].upper
    # accuracy near the boundary falls well below the reference's: detected
    assert acc.value < 0.7 < spec.performance_estimator["reference_accuracy"]
    assert acc.status == ResultStatus.detected
    realized = np.mean(np.asarray(current["predictions"]) == np.asarray(current["labels"]))
    assert acc.extra_data["lower"] <= realized <= acc.extra_data["upper"]
    assert context.endpoint_updates["performance_estimated"]["accuracy"]["value"] == acc.value


def test_an_unshifted_window_of_a_calibrated_model_raises_no_alarm():
    spec = build_spec(body(reference=logistic_data(5000, seed=6)), 0.0)
    outputs, _ = run(spec, window(logistic_data(1000, seed=7)))
    acc = outputs[0]
    assert acc.status == ResultStatus.no_detection


def test_endpoints_without_scores_get_nothing():
    spec = build_spec({"uid": "u", "project": "p", "name": "n", "feature_names": ["x"]}, 0.0)
    assert run(spec, window(logistic_data(10, seed=1)))[0] == []


def test_multiclass_scores_per_class():
    rng = np.random.default_rng(12)
    n = 3000
    y = rng.integers(0, 3, n)
    raw = rng.dirichlet(np.ones(3), n) * 0.5 + np.eye(3)[y] * 0.5
    reference = {
        "rows": [[float(v)] for v in y],
        "scores": raw.tolist(),
        "predictions": raw.argmax(axis=1).tolist(),
        "labels": y.tolist(),
    }
    spec = build_spec(
        {
            "uid": "mc",
            "project": "p",
            "name": "mc",
            "feature_names": ["x"],
            "label_names": ["prediction", "p0", "p1", "p2"],
            "score_outputs": {"0": "p0", "1": "p1", "2": "p2"},
            "reference": reference,
        },
        0.0,
    )
    assert spec.performance_estimator["classes"] == ["0", "1", "2"]
    batch = ColumnBatch(
        timestamps=np.arange(n, dtype=float),
        features=y[:, None].astype(float),
        outputs=[raw.argmax(axis=1).astype(float), raw[:, 0], raw[:, 1], raw[:, 2]],
        request_ids=np.array([str(i) for i in range(n)], dtype=object),
        latency_us=np.full(n, 1.0),
        errors=np.array([None] * n, dtype=object),
    )
    outputs, _ = run(spec, batch)
    acc = outputs[0]
    realized = float(np.mean(raw.argmax(axis=1) == y))
    # in-sample: the calibrated expectation is within a point of the realized accuracy
    assert abs(acc.value - realized) < 0.01
    assert acc.extra_data["lower"] <= realized <= acc.extra_data["upper"]
