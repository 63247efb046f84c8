"""Labels joined to predictions by request id, in any order; late labels count in the
next result; a concept-drift detector runs on the error stream."""

import time

import numpy as np
import pytest

from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.config import Settings
from modelmon_daemon.core.enums import ResultStatus
from modelmon_daemon.core.records import WindowMeta
from tests.helpers import make_batch, make_spec


@pytest.fixture
def writer(tmp_path):
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    w = WriterActor(s.to_dict())
    spec = make_spec("clf").to_dict()
    spec.update(model_type="classification", reference_performance={"accuracy": 0.9})
    w.store.put_endpoint(spec)
    return w, spec


def commit(writer_and_spec, start, outputs, ids, late=False):
    writer, spec = writer_and_spec
    n = len(outputs)
    batch = make_batch(np.full(n, start + 1.0), np.zeros((n, 2)), outputs=outputs, rids=ids)
    meta = WindowMeta("clf", start, start + 60.0, [], rows=n, late=late)
    writer.commit_window(meta, batch, [], spec, ["histogram-data-drift"])
    return {r["name"]: r for r in writer.parquet.read_results("clf", start=start, end=start + 60)}


def test_labels_before_and_after_their_predictions(writer):
    w, _ = writer
    w.store.log_labels("clf", [("a", 1), ("b", 0)], 0.0)  # before the predictions
    results = commit(writer, 0.0, [1, 1, 0, 1], ["a", "b", "c", "d"])
    assert results["accuracy"]["value"] == 0.5  # a right, b wrong: the two joined so far
    assert results["accuracy"]["sample_size"] == 2
    assert results["accuracy"]["status"] == 2  # 0.5 vs 0.9: a 44% drop
    assert w.store.log_labels("clf", [("c", 0), ("d", 1), ("zz", 1)], 0.0) == 2  # after
    results = commit(writer, 60.0, [0], ["e"])  # no label for e yet
    assert results["accuracy"]["value"] == 1.0 and results["accuracy"]["sample_size"] == 2
    assert {"precision", "recall", "f1"} <= set(results)
    drift = results["error_stream_drift"]
    assert drift["extra"]["detector"] == "DDM" and drift["extra"]["events_seen"] == 4
    assert w.store.get_last_analyzed("clf")["model-performance"] == 120.0


def test_a_window_commit_that_is_retried_scores_nothing_twice(writer):
    w, spec = writer
    w.store.log_labels("clf", [("a", 1)], 0.0)
    batch = make_batch([1.0], [[0, 0]], outputs=[1], rids=["a"])
    meta = WindowMeta("clf", 0.0, 60.0, [], rows=1)
    assert w.commit_window(meta, batch, [], spec, [])
    assert not w.commit_window(meta, batch, [], spec, [])
    joined, waiting = w.store.performance_inputs("clf", ["a"])
    assert joined == {} and waiting == {}


def test_regression_scores_and_adwin(tmp_path):
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    w = WriterActor(s.to_dict())
    spec = make_spec("reg").to_dict()
    spec.update(model_type="regression", reference_performance={"rmse": 1.0})
    w.store.put_endpoint(spec)
    w.store.log_labels("reg", [("a", 1.0), ("b", 3.0)], 0.0)
    batch = make_batch([1.0, 2.0], [[0, 0], [0, 0]], outputs=[2.0, 3.0], rids=["a", "b"])
    w.commit_window(WindowMeta("reg", 0.0, 60.0, [], rows=2), batch, [], spec, [])
    results = {r["name"]: r for r in w.parquet.read_results("reg")}
    assert results["rmse"]["value"] == pytest.approx((0.5) ** 0.5)
    assert results["mae"]["value"] == 0.5
    assert results["error_stream_drift"]["extra"]["detector"] == "ADWIN"


def test_two_windows_of_one_endpoint_in_one_tick_score_each_pair_once(writer):
    """commit_tick puts one window per endpoint in each round: the second window sees
    what the first committed (joined pairs deleted, detector state advanced)."""
    w, _ = writer
    w.store.log_labels("clf", [(f"r{i}", 1) for i in range(20)], time.time())
    batches = [
        make_batch(
            np.full(10, 1.0), np.zeros((10, 2)), outputs=[1] * 10, rids=[f"r{i}" for i in range(10)]
        ),
        make_batch(
            np.full(10, 61.0),
            np.zeros((10, 2)),
            outputs=[0] * 10,
            rids=[f"r{i}" for i in range(10, 20)],
        ),
    ]
    items = [
        (0, 0, WindowMeta("clf", 0.0, 60.0, [], rows=10), []),
        (0, 1, WindowMeta("clf", 60.0, 120.0, [], rows=10), []),
    ]
    status, _ = w.commit_tick(items, [("clf", 120.0, None)], ["histogram-data-drift"], [batches])
    assert status == [True, True]
    accuracy = [r for r in w.parquet.read_results("clf") if r["name"] == "accuracy"]
    assert [(r["value"], r["sample_size"]) for r in accuracy] == [(1.0, 10), (0.0, 10)]
    assert w.store.get_state("clf")["closed_through"] == 120.0
    # the same tick again (acknowledgements lost): nothing is committed twice
    assert w.commit_tick(items, [], ["histogram-data-drift"], [batches])[0] == [False, False]


def _labeled(model_type, labels, predictions, start=0.0, reference=None):
    from modelmon_daemon.applications.model_performance import LabeledWindow

    meta = WindowMeta("ep", start, start + 60.0, [], rows=len(labels))
    return LabeledWindow(meta, model_type, labels, predictions, reference or {})


def test_the_detector_state_carries_over_windows_as_if_one_stream():
    """Errors split over windows give the alarm at the same event index as one window
    holding them all (the state goes out and comes back as bytes)."""
    from modelmon_daemon.applications.concept_drift import ConceptDriftApplication

    rng = np.random.default_rng(7)
    wrong = np.concatenate([rng.random(600) < 0.05, rng.random(600) < 0.6])
    labels = [1] * len(wrong)
    predictions = [0 if w else 1 for w in wrong]
    app = ConceptDriftApplication()
    whole, _ = app.detect(_labeled("classification", labels, predictions), None)
    assert whole.status == ResultStatus.detected
    state = None
    alarms = []
    for k in range(0, len(labels), 300):
        window = _labeled("classification", labels[k : k + 300], predictions[k : k + 300], k)
        record, state = app.detect(window, state)
        alarms.append(record.extra["alarm_at_event"])
    first = next(a for a in alarms if a is not None)
    assert first == whole.extra["alarm_at_event"] and first > 600
    assert record.extra["events_seen"] == len(labels)


def test_a_model_that_is_always_right_never_raises_concept_drift():
    from modelmon_daemon.applications.concept_drift import ConceptDriftApplication

    app = ConceptDriftApplication()
    state = None
    for _ in range(20):
        record, state = app.detect(_labeled("classification", [1, 0] * 250, [1, 0] * 250), state)
        assert record.status == ResultStatus.no_detection and record.value == 0.0
        record, _ = app.detect(_labeled("regression", [2.5] * 100, [2.5] * 100), None)
        assert record.status == ResultStatus.no_detection


def test_model_performance_metrics_and_drop_status():
    from modelmon_daemon.applications.model_performance import ModelPerformanceApplication

    app = ModelPerformanceApplication(0.1, 0.2, min_sample_size=2)
    records = {
        r.name: r
        for r in app.score(
            _labeled("classification", [1, 1, 0, 0], [1, 0, 0, 0], reference={"accuracy": 1.0})
        )
    }
    assert records["accuracy"].value == 0.75 and records["accuracy"].type == "result"
    assert records["accuracy"].status == ResultStatus.detected  # a 25% drop
    assert records["accuracy"].extra["relative_drop"] == pytest.approx(0.25)
    assert records["precision"].type == "metric" and records["precision"].value == 1.0
    (few,) = [r for r in app.score(_labeled("regression", [1.0], [1.5])) if r.type == "result"]
    assert few.name == "rmse" and few.value == 0.5 and few.status == ResultStatus.irrelevant


def test_a_failing_stateful_application_is_reported_and_the_window_still_commits(tmp_path):
    """Labels that cannot be numbers for a regression model: model-performance fails with
    an mm-app-failed event, the window commits, the detector state does not move."""
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    w = WriterActor(s.to_dict())
    spec = make_spec("reg").to_dict()
    spec.update(model_type="regression")
    w.store.put_endpoint(spec)
    w.store.log_labels("reg", [("a", "not a number")], 0.0)
    batch = make_batch([1.0], [[0, 0]], outputs=[2.0], rids=["a"])
    assert w.commit_window(WindowMeta("reg", 0.0, 60.0, [], rows=1), batch, [], spec, [])
    assert w.store.get_state("reg")["closed_through"] == 60.0
    failed = {f["application"] for f in w.store.app_failures("reg")}
    assert failed == {"model-performance", "concept-drift"}
    assert w.store.get_detector("reg") is None
