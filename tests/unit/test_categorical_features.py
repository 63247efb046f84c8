"""Categorical features end to end in-process: registration infers them from the
reference, events carry strings or integers, the wire and Parquet keep them, and
drift-metrics / data-quality analyze them."""

import numpy as np
import pyarrow.parquet as pq
import pytest

from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.applications.base import MonitoringContext, Result
from modelmon_daemon.applications.data_quality import DataQualityApplication
from modelmon_daemon.applications.drift_metrics import DriftMetricsApplication
from modelmon_daemon.config import Settings
from modelmon_daemon.core.enums import ResultStatus
from modelmon_daemon.core.errors import InvalidEvent
from modelmon_daemon.core.records import ColumnBatch, WindowMeta
from modelmon_daemon.ingest.events import parse_mlrun_events, parse_native_events
from modelmon_daemon.ingest.registration import build_spec


def spec_with_reference():
    rng = np.random.default_rng(0)
    rows = [
        [float(rng.normal()), str(rng.choice(["red", "green", "blue"], p=[0.5, 0.3, 0.2]))]
        for _ in range(1000)
    ]
    return build_spec(
        {
            "project": "p",
            "name": "m",
            "uid": "cat",
            "feature_names": ["x", "color"],
            "reference": {"rows": rows},
        },
        0.0,
    )


def test_registration_infers_categorical_from_strings():
    spec = spec_with_reference()
    assert spec.categorical_features == ["color"]
    color = spec.feature_stats["color"]
    assert color["kind"] == "categorical" and sum(color["counts"].values()) == 1000
    assert "hist" in spec.feature_stats["x"] and spec.multivariate == {}  # one numeric feature
    declared = build_spec(
        {
            "project": "p",
            "name": "m",
            "feature_names": ["x", "code"],
            "categorical_features": ["code"],
            "reference": {"rows": [[1.0, 3], [2.0, 4], [3.0, 3]]},
        },
        0.0,
    )
    assert declared.feature_stats["code"]["counts"] == {"3": 2, "4": 1}


def test_events_carry_categories_through_the_wire():
    def shape(uid):
        return (2, 1, (1,))

    events = [
        {
            "model": "m",
            "function_uri": "p/f",
            "endpoint_id": "cat",
            "request": {"inputs": [[1.0, "red"], [2.0, None]]},
            "resp": {"outputs": [0, 1]},
        }
    ]
    batch = parse_mlrun_events(events, shape, 0.0).batches["cat"]
    assert batch.categorical[1].tolist() == ["red", None] and np.isnan(batch.features[:, 1]).all()
    back = ColumnBatch.from_wire(batch.to_wire())
    assert back.categorical[1].tolist() == ["red", None]
    both = ColumnBatch.concat([batch, back], 2, 1)
    assert both.categorical[1].tolist() == ["red", None, "red", None]
    events[0]["request"]["inputs"] = [[1.0, "red"], [1.0, {"no": 1}]]
    with pytest.raises(InvalidEvent) as err:
        parse_mlrun_events(events, shape, 0.0)
    assert err.value.details == {"index": 0, "field": "request.inputs[1]"}  # the column
    native = parse_native_events(
        {"inputs": {"x": [1.0, 2.0], "color": ["blue", "teal"]}}, ["x", "color"], 1, 0.0, (1,)
    )
    assert native.categorical[1].tolist() == ["blue", "teal"]


def run(app, spec, batch):
    ctx = MonitoringContext(app.NAME, spec.to_dict(), 0, 60, batch, {})
    return {o.name: o for o in app.do_tracking(ctx)}


def test_categorical_drift_unseen_categories_and_missing_rate():
    spec = spec_with_reference()
    colors = ["teal"] * 50 + ["red"] * 40 + [None] * 10
    batch = parse_native_events(
        {"inputs": {"x": list(np.linspace(-1, 1, 100)), "color": colors}},
        ["x", "color"],
        1,
        0.0,
        (1,),
    )
    out = run(DriftMetricsApplication(), spec, batch)
    cat = out["categorical_drift"]
    assert isinstance(cat, Result) and cat.value > 0.5
    assert cat.status in (ResultStatus.potential_detection, ResultStatus.detected)
    assert cat.extra_data["features"]["color"]["unseen"] == ["teal"]
    assert cat.extra_data["features"]["color"]["unseen_count"] == 1
    assert "color" in out["drifted_features_share"].extra_data["drifted"]
    quality = run(DataQualityApplication(), spec, batch)
    assert quality["missing_rate_max"].extra_data["features"]["color"]["missing_rate"] == 0.1
    assert quality["missing_features"].value == 0


def test_categories_are_strings_in_parquet(tmp_path):
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    writer = WriterActor(s.to_dict())
    spec = spec_with_reference().to_dict()
    batch = parse_native_events(
        {"inputs": {"x": [1.0, 2.0], "color": ["red", 7]}}, ["x", "color"], 1, 1.0, (1,)
    )
    writer.commit_window(WindowMeta("cat", 0.0, 60.0, [], rows=2), batch, [], spec, [])
    (path,) = list((tmp_path / "events").rglob("*.parquet"))
    table = pq.read_table(path)
    assert table.column("color").to_pylist() == ["red", "7"]


def test_an_identifier_like_column_lists_a_bounded_number_of_unseen_values():
    """A new value on every row (an id sent as a categorical feature): the result names
    the first MAX_LISTED_UNSEEN of them and counts them all; the distances are those of
    the whole window (reference implementation: numpy on the full count vectors)."""
    from modelmon_daemon.analytics.categorical import MAX_LISTED_UNSEEN, categorical_drift

    reference = {"a": 60, "b": 40}
    current = {f"id-{i:05d}": 1 for i in range(5000)} | {"a": 30}
    found = categorical_drift(current, reference)
    assert found["unseen_count"] == 5000
    assert found["unseen"] == [f"id-{i:05d}" for i in range(MAX_LISTED_UNSEEN)]
    cats = sorted(set(reference) | set(current))
    t = np.array([current.get(c, 0) for c in cats], dtype=float)
    u = np.array([reference.get(c, 0) for c in cats], dtype=float)
    tp, up = t / t.sum(), u / u.sum()
    assert found["tvd"] == pytest.approx(np.abs(tp - up).sum() / 2, abs=1e-12)
    hellinger = np.sqrt(max(1 - np.sqrt(tp * up).sum(), 0))
    assert found["hellinger"] == pytest.approx(hellinger, abs=1e-12)
