"""Labels joined to predictions by request id, in any order; late labels count in the
next result; a concept-drift detector runs on the error stream."""

import time

import numpy as np
import pytest

from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.config import Settings
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
