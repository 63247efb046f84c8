import numpy as np

from modelmon_daemon.applications.base import MonitoringContext
from modelmon_daemon.applications.data_quality import DataQualityApplication
from modelmon_daemon.core.enums import ResultStatus
from modelmon_daemon.ingest.events import parse_native_events
from tests.helpers import make_batch


def run(matrix, names=("a", "b", "c")):
    return run_batch(make_batch(np.zeros(len(matrix)), matrix), names)


def run_batch(batch, names=("a", "b", "c")):
    stats = {n: {"min": 0.0, "max": 10.0} for n in names}
    ctx = MonitoringContext(
        "data-quality",
        {"uid": "e", "feature_names": list(names), "feature_stats": stats},
        0,
        60,
        batch,
        {},
    )
    return {o.name: o for o in DataQualityApplication().do_tracking(ctx)}


def test_missing_and_out_of_range_rates_per_feature():
    m = np.array(
        [[1.0, 5.0, np.nan], [2.0, 11.0, np.nan], [np.nan, -1.0, np.nan], [3.0, 4.0, np.nan]]
    )
    out = run(m)
    features = out["missing_rate_max"].extra_data["features"]
    assert features["a"] == {"missing_rate": 0.25, "out_of_range_rate": 0.0}
    assert features["b"] == {"missing_rate": 0.0, "out_of_range_rate": 0.5}
    assert out["missing_rate_max"].value == 1.0
    assert out["missing_rate_max"].status is ResultStatus.detected
    assert out["out_of_range_rate_max"].value == 0.5
    assert out["missing_features"].value == 1 and out["missing_features"].extra_data["missing"] == [
        "c"
    ]


def test_clean_window_is_clean():
    out = run(np.full((50, 3), 5.0))
    assert all(
        o.status is ResultStatus.no_detection for n, o in out.items() if hasattr(o, "status")
    )


def test_a_feature_gone_from_the_native_columns_is_all_missing_not_an_error():
    batch = parse_native_events({"inputs": {"a": [1, 2], "b": [3, 4]}}, ["a", "b", "c"], 1, 0.0)
    assert np.isnan(batch.features[:, 2]).all()
    out = run(batch.features)
    assert out["missing_features"].extra_data["missing"] == ["c"]


def test_unexpected_columns_are_reported_not_refused():
    from modelmon_daemon.core.records import ColumnBatch

    batch = parse_native_events(
        {"inputs": {"a": [1, 2], "b": [3, 4], "c": [5, 6], "new": [0, 0]}}, ["a", "b", "c"], 1, 0.0
    )
    assert batch.unexpected == {"new": 2}
    assert ColumnBatch.from_wire(batch.to_wire()).unexpected == {"new": 2}
    out = run(batch.features)
    found = run_batch(batch)
    assert found["unexpected_columns"].value == 1
    assert found["unexpected_columns"].extra_data["columns"] == {"new": 2}
    assert found["unexpected_columns"].status is ResultStatus.potential_detection
    assert out["unexpected_columns"].value == 0


def test_many_unexpected_columns_are_counted_and_the_commonest_named():
    from modelmon_daemon.applications.data_quality import MAX_LISTED_COLUMNS, listed_columns
    from modelmon_daemon.core.records import ColumnBatch

    batches = [
        parse_native_events(
            {"inputs": {"a": [1], "b": [2], "c": [3], f"n{k:03d}": [0]}}, ["a", "b", "c"], 1, 0.0
        )
        for k in range(100)
    ]
    batches.append(
        parse_native_events(
            {"inputs": {"a": [1, 2], "b": [2, 3], "c": [3, 4], "n050": [0, 0]}},
            ["a", "b", "c"],
            1,
            0.0,
        )
    )
    window = ColumnBatch.concat(batches, 3, 1)
    assert len(window.unexpected) == 100 and window.unexpected["n050"] == 3
    listed = listed_columns(window.unexpected)
    assert len(listed) == MAX_LISTED_COLUMNS
    assert list(listed)[:3] == ["n050", "n000", "n001"]  # most rows first, then by name
    found = run_batch(window)
    assert found["unexpected_columns"].value == 100
    assert found["unexpected_columns"].extra_data["columns"] == listed
