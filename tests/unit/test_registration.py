import hashlib

import numpy as np
import pandas as pd
import pytest

from modelmon_daemon.analytics.stats import FLOAT_MAX
from modelmon_daemon.core.errors import ApiError
from modelmon_daemon.ingest.registration import build_spec


def body(**extra):
    return {"project": "p", "name": "m", "feature_names": ["a", "b"], **extra}


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_reference_file_gives_the_same_stats_as_rows(tmp_path, suffix):
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(300, 2)).round(6)
    frame = pd.DataFrame(rows, columns=["a", "b"]).assign(extra="x")
    path = tmp_path / f"ref.{suffix}"
    frame.to_parquet(path) if suffix == "parquet" else frame.to_csv(path, index=False)
    from_file = build_spec(body(reference={"path": str(path)}), 0.0)
    from_rows = build_spec(body(reference={"rows": rows.tolist()}), 0.0)
    assert from_file.feature_stats == from_rows.feature_stats
    hist = from_file.feature_stats["a"]["hist"]
    assert len(hist[0]) == 22 and hist[1][0] == -FLOAT_MAX and sum(hist[0]) == 300


def test_reference_file_missing_column_names_it(tmp_path):
    path = tmp_path / "ref.csv"
    pd.DataFrame({"a": [1.0, 2.0]}).to_csv(path, index=False)
    with pytest.raises(ApiError) as err:
        build_spec(body(reference={"path": str(path)}), 0.0)
    assert err.value.details["column"] == "b"


def test_uid_from_function_uri_matches_mlrun_events():
    spec = build_spec(body(function_uri="p/serving:v3", model="m", version="7"), 0.0)
    assert spec.uid == hashlib.sha1(b"p_serving_v3_m_7").hexdigest()
    assert spec.version == "7"
    assert build_spec(body(model="m:v2"), 0.0).version == "v2"
    assert build_spec(body(), 0.0).uid == hashlib.sha1(b"p_m_N/A_m_latest").hexdigest()


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"feature_stats": {"a": {"hist": [[1, 2], [0, 1]]}}}, "feature_stats.a.hist"),
        ({"feature_stats": {"zz": {"hist": [[1], [0, 1]]}}}, "feature_stats.zz"),
        ({"feature_stats": {"a": {"hist": [[1, 1], [0, 2, 1]]}}}, "feature_stats.a.hist"),
        # a numeric feature's stats are read as numbers every window: refused up front
        ({"feature_stats": {"a": {"mean": "x", "hist": [[1], [0, 1]]}}}, "feature_stats.a.mean"),
        ({"feature_stats": {"a": {"max": {"q": 1}, "hist": [[1], [0, 1]]}}}, "feature_stats.a.max"),
        ({"feature_stats": {"a": {"std": [1.0], "hist": [[1], [0, 1]]}}}, "feature_stats.a.std"),
        ({"feature_stats": {"a": {"count": True, "hist": [[1], [0, 1]]}}}, "feature_stats.a.count"),
        ({"feature_stats": {"a": {"hist": [[1e308, 1e308], [0, 1, 2]]}}}, "feature_stats.a.hist"),
        ({"uid": "bad uid!"}, "uid"),
        ({"feature_names": ["a", "a"]}, "feature_names"),
        ({"labels": ["team"]}, "labels"),
        ({"labels": {"team": {"nested": 1}}}, "labels"),
        ({"labels": {f"k{i}": "v" for i in range(65)}}, "labels"),
    ],
)
def test_bad_registration_names_the_field(extra, field):
    with pytest.raises(ApiError) as err:
        build_spec(body(**extra), 0.0)
    assert err.value.details["field"] == field


def test_mlrun_stats_of_text_and_time_columns_are_kept_as_they_are():
    """MLRun's get_df_stats writes a non-numeric column's describe() values as strings
    and gives it no histogram: such stats are kept, and the data-quality application
    treats a min or max that is no number as unknown (no bound), not as an error."""
    from modelmon_daemon.applications.data_quality import _bounds, quality_rates

    stats = {
        "a": {"count": 4, "unique": 2, "top": "x", "freq": 3},
        "b": {"count": 4, "min": "2026-01-01 00:00:00", "max": "2026-02-01 00:00:00"},
        "c": {"count": 4, "mean": None, "min": 0.0, "max": 1.0, "hist": [[1, 3], [0, 0.5, 1]]},
    }
    spec = build_spec(body(feature_names=["a", "b", "c"], feature_stats=stats), 0.0)
    assert spec.feature_stats["b"]["min"] == "2026-01-01 00:00:00"
    matrix = np.array([[1.0, 5.0, 2.0], [2.0, -5.0, 0.5]])
    missing, outside = quality_rates(matrix, *_bounds(spec.feature_stats, ("a", "b", "c")))
    assert missing.tolist() == [0.0, 0.0, 0.0] and outside.tolist() == [0.0, 0.0, 0.5]


def test_given_feature_stats_are_padded_once():
    stats = {"a": {"hist": [[1, 2], [0.0, 1.0, 2.0]]}}
    spec = build_spec(body(feature_stats=stats), 0.0)
    again = build_spec(body(feature_stats=spec.feature_stats), 0.0)
    assert spec.feature_stats == again.feature_stats
    assert spec.feature_stats["a"]["hist"][0] == [0, 1, 2, 0]


def test_a_reference_file_is_summarized_once_per_version(tmp_path, monkeypatch):
    import os

    import modelmon_daemon.ingest.registration as registration

    rng = np.random.default_rng(1)
    path = tmp_path / "ref.parquet"
    pd.DataFrame(rng.normal(size=(200, 2)), columns=["a", "b"]).to_parquet(path)
    reads = []
    real = registration.reference_columns
    monkeypatch.setattr(
        registration, "reference_columns", lambda *a, **k: reads.append(1) or real(*a, **k)
    )
    first = build_spec(body(uid="e1", reference={"path": str(path)}), 0.0)
    second = build_spec(body(uid="e2", reference={"path": str(path)}), 0.0)
    assert len(reads) == 1 and first.feature_stats == second.feature_stats
    second.feature_stats["a"]["count"] = -1  # a copy: the cached summary is untouched
    assert (
        build_spec(body(uid="e3", reference={"path": str(path)}), 0.0).feature_stats["a"]["count"]
        == 200
    )
    pd.DataFrame(rng.normal(size=(300, 2)), columns=["a", "b"]).to_parquet(path)
    os.utime(path, ns=(1, 1))  # a new version of the file is read again
    assert (
        build_spec(body(uid="e4", reference={"path": str(path)}), 0.0).feature_stats["a"]["count"]
        == 300
    )
    assert len(reads) == 2


def test_mlrun_feature_stats_with_the_label_column_are_accepted():
    """MLRun's model artifacts carry the label column's stats too; MLRun ignores them."""
    hist = {"hist": [[1, 2, 3], [0.0, 1.0, 2.0, 3.0]]}
    stats = {"a": hist, "b": hist, "label": hist}
    spec = build_spec(body(feature_stats=stats, label_column="label"), 0.0)
    assert set(spec.feature_stats) == {"a", "b"}
    spec = build_spec(body(feature_stats=stats, label_names=["label"]), 0.0)
    assert set(spec.feature_stats) == {"a", "b"}
    with pytest.raises(ApiError) as err:
        build_spec(body(feature_stats=stats), 0.0)
    assert err.value.details["field"] == "feature_stats.label"


def test_an_update_keeps_what_its_body_leaves_out():
    """Reference rows posted for an endpoint MLRun's serving registered (function_uri,
    version, model class, no stats) keep its identity; a later update of the thresholds
    alone keeps the stats and what was fitted on the reference."""
    rng = np.random.default_rng(3)
    auto = build_spec(body(uid="u1", function_uri="p/serving:prod", model="m", version="v1"), 0.0)
    auto.model_class = "ChurnModel"
    auto.auto_registered = True
    store = {"u1": auto.to_dict()}
    rows = np.column_stack([rng.normal(size=200), rng.normal(size=200)]).round(6)
    scores = rng.uniform(size=200).round(4)
    labels = (rng.uniform(size=200) < scores).astype(int)
    update = body(
        uid="u1",
        label_names=["prediction", "score"],
        score_output="score",
        reference={
            "rows": rows.tolist(),
            "scores": scores.tolist(),
            "predictions": (scores >= 0.5).astype(int).tolist(),
            "labels": labels.tolist(),
        },
    )
    spec = build_spec(update, 1.0, stored=store.get)
    assert (spec.function_uri, spec.version, spec.model, spec.model_class) == (
        "p/serving:prod",
        "v1",
        "m",
        "ChurnModel",
    )
    assert not spec.auto_registered
    assert spec.feature_stats["a"]["hist"][1][0] == -FLOAT_MAX
    assert spec.score_outputs and spec.performance_estimator and spec.multivariate
    store["u1"] = spec.to_dict()

    again = build_spec(
        body(uid="u1", calibrate=True, feature_stats=None, version=None, function_uri=None),
        2.0,
        stored=store.get,
    )  # null is left out: MLRun's serializations write absent fields as null
    assert again.calibrate and again.model_type == "classification"
    assert (again.version, again.function_uri) == ("v1", "p/serving:prod")
    assert again.label_names == ["prediction", "score"]
    assert again.feature_stats == spec.feature_stats
    assert again.multivariate == spec.multivariate
    assert again.prediction_stats == spec.prediction_stats
    assert again.score_outputs == spec.score_outputs
    assert again.performance_estimator == spec.performance_estimator
    store["u1"] = again.to_dict()

    # what the body says wins: new stats, an explicit version, a version in the model
    given = {"a": {"hist": [[1, 2, 3], [0.0, 1.0, 2.0, 3.0]]}}
    changed = build_spec(body(uid="u1", feature_stats=given, version="v2"), 3.0, stored=store.get)
    assert set(changed.feature_stats) == {"a"} and changed.version == "v2"
    assert changed.multivariate == {} and changed.calibrate  # stats given, calibrate kept
    assert build_spec(body(uid="u1", model="m:v3"), 3.0, stored=store.get).version == "v3"
    # nothing stored under the uid: a registration as before
    fresh = build_spec(body(uid="u2"), 4.0, stored=store.get)
    assert fresh.function_uri == "" and fresh.feature_stats == {} and fresh.version == ""


def test_model_labels_are_kept_as_strings_and_through_updates():
    from modelmon_daemon.core.identity import model_labels

    assert model_labels({"a": "x", "n": 3, "f": 0.5, "b": True}) == {
        "a": "x",
        "n": "3",
        "f": "0.5",
        "b": "true",
    }
    assert model_labels({"a": None}) is None and model_labels({"": "x"}) is None
    assert model_labels({"a": "x" * 257}) is None and model_labels("a=b") is None
    spec = build_spec(body(labels={"team": "risk"}), 0.0)
    assert spec.labels == {"team": "risk"}
    stored = {spec.uid: spec.to_dict()}
    again = build_spec(body(calibrate=True), 1.0, stored=stored.get)
    assert again.labels == {"team": "risk"}  # left out: kept
    assert build_spec(body(labels={}), 1.0, stored=stored.get).labels == {}
