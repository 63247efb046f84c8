"""Performance estimation over HTTP: a scored classifier's windows get estimated accuracy,
precision, recall, F1 and ROC AUC with their bands before any label arrives; when labels
come, the realized accuracy lands next to the estimate in the endpoint record."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from modelmon_daemon.analytics.estimation import estimate_binary, fit_isotonic
from modelmon_daemon.applications.performance_estimation import window_seed

pytestmark = pytest.mark.e2e
P = 30.0
UID = "cbpe-e2e"


def logistic(n: int, seed: int, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(0.0, scale, n)
    p = 1.0 / (1.0 + np.exp(-2.0 * x))
    y = (rng.random(n) < p).astype(int)
    return x, p, y


def test_estimates_before_labels_and_realized_after(daemon):
    x, p, y = logistic(4000, seed=21, scale=1.0)
    status, record = daemon.post(
        "/v1/endpoints",
        {
            "uid": UID,
            "project": "p",
            "name": "cbpe",
            "feature_names": ["x"],
            "label_names": ["prediction", "score"],
            "score_output": "score",
            "reference": {
                "rows": [[float(v)] for v in x],
                "scores": p.tolist(),
                "predictions": (p >= 0.5).astype(int).tolist(),
                "labels": y.tolist(),
            },
        },
    )
    assert status == 201, record
    estimator = record["performance_estimator"]
    assert record["model_type"] == "classification"
    assert estimator["poorly_calibrated"] is False and estimator["reference_ece"] < 0.05

    # a past window shifted towards the decision boundary; outputs as named columns
    cx, cp, cy = logistic(1000, seed=22, scale=0.4)
    start = (math.floor(time.time() / P) - 4) * P
    ids = [f"e{i}" for i in range(1000)]
    status, _ = daemon.post(
        f"/v1/endpoints/{UID}/events",
        {
            "inputs": {"x": cx.tolist()},
            "outputs": {"score": cp.tolist(), "prediction": (cp >= 0.5).astype(int).tolist()},
            "timestamps": (start + np.linspace(0, P - 1, 1000)).tolist(),
            "request_ids": ids,
        },
    )
    assert status == 202

    def estimated():
        _, res = daemon.get(f"/v1/endpoints/{UID}/results?application=performance-estimation")
        return res["results"] if len(res["results"]) == 5 else None

    results = {r["name"]: r for r in daemon.wait_for(estimated)}
    curve = fit_isotonic(p, y.astype(float))
    expected = estimate_binary(curve(cp), cp >= 0.5, cp, window_seed(UID, start))
    for metric, e in expected.items():
        got = results[f"estimated_{metric}"]
        assert got["value"] == pytest.approx(e.value, abs=1e-12)
        assert got["extra"]["lower"] == pytest.approx(e.lower, abs=1e-12)
        assert got["extra"]["upper"] == pytest.approx(e.upper, abs=1e-12)
    acc = results["estimated_accuracy"]
    assert acc["type"] == "result" and acc["kind"] == 2  # model_performance
    assert acc["status"] == 2  # detected: far below the reference's accuracy
    realized = float(np.mean((cp >= 0.5).astype(int) == cy))
    assert acc["extra"]["lower"] <= realized <= acc["extra"]["upper"]
    record = daemon.get(f"/v1/endpoints/{UID}")[1]
    assert record["performance"]["estimated"]["accuracy"]["value"] == pytest.approx(acc["value"])
    assert record["performance"]["realized"] is None

    # labels arrive for that window; the next window's close scores them
    status, body = daemon.post(
        f"/v1/endpoints/{UID}/labels", {"request_ids": ids, "labels": cy.tolist()}
    )
    assert status == 202 and body["joined"] == 1000
    nx, np_, _ = logistic(200, seed=23, scale=1.0)
    status, _ = daemon.post(
        f"/v1/endpoints/{UID}/events",
        {
            "inputs": {"x": nx.tolist()},
            "outputs": {"prediction": (np_ >= 0.5).astype(int).tolist(), "score": np_.tolist()},
            # now: the history is closed (and would be late), the current window is open
            "timestamps": (time.time() + np.linspace(0, 1, 200)).tolist(),
        },
    )
    assert status == 202

    def realized_in_record():
        perf = daemon.get(f"/v1/endpoints/{UID}")[1]["performance"]
        return perf if perf["realized"] else None

    perf = daemon.wait_for(realized_in_record, timeout=90)  # the current window closes
    assert perf["realized"].get("accuracy") == pytest.approx(realized), perf
    assert perf["realized"]["pairs"] == 1000
    assert perf["estimated"]["start"] is not None
