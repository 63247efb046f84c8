import numpy as np
import pytest

from modelmon_daemon.analytics.stats import FLOAT_MAX, pad_hist
from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.applications.histogram_data_drift import (
    HistogramDataDriftApplication,
    histogram_drift,
    status_for,
)
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import ColumnBatch


def _batch(matrix):
    n = matrix.shape[0]
    return ColumnBatch(
        timestamps=np.zeros(n),
        features=matrix,
        outputs=[np.zeros(n)],
        request_ids=np.array([str(i) for i in range(n)], dtype=object),
        latency_us=np.full(n, np.nan),
        errors=np.array([None] * n, dtype=object),
    )


def test_golden_distributions_through_the_application():
    # reference u = [0, 1/6, 1/3, 1/2] over 4 inner bins; current t = [1/2, 1/3, 1/6, 0]
    stats = {"x": {"hist": [[0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0, 4.0]]}}
    current = np.array([[0.5]] * 3 + [[1.5]] * 2 + [[2.5]] * 1)
    drift = histogram_drift(current, ["x"], stats)
    assert drift is not None
    assert drift.tvd_mean == pytest.approx(0.666666, abs=1e-6)
    assert drift.hellinger_mean == pytest.approx(0.727045, abs=1e-6)
    assert drift.kld_mean == pytest.approx(8.748242, abs=1e-6)
    assert drift.general_drift == pytest.approx((0.727045 + 0.666667) / 2, abs=1e-6)


def test_identical_window_gives_zero_drift():
    rng = np.random.default_rng(0)
    edges = np.linspace(-3, 3, 21)
    counts = rng.integers(1, 30, size=20)
    centers = (edges[:-1] + edges[1:]) / 2
    window = np.repeat(centers, counts)[:, None].repeat(2, axis=1)
    stats = {n: {"hist": [counts.tolist(), edges.tolist()]} for n in "ab"}
    drift = histogram_drift(window, ["a", "b"], stats)
    assert drift is not None
    assert drift.general_drift == pytest.approx(0.0, abs=1e-7)
    assert drift.kld_mean == pytest.approx(0.0, abs=1e-12)


def test_value_equal_to_reference_max_lands_in_upper_padding_bin_like_mlrun():
    # MLRun bins the window with np.histogram on the padded edges: the last inner bin
    # is half-open there, so the reference maximum itself counts in the padding bin.
    stats = {"x": {"hist": [[1, 1], [0.0, 1.0, 2.0]]}}
    drift = histogram_drift(np.array([[2.0]]), ["x"], stats)
    assert drift is not None
    assert drift.counts[0].tolist() == [0, 0, 0, 1]
    expected, _ = np.histogram([2.0], bins=drift.edges[0])
    assert drift.counts[0].tolist() == expected.tolist()


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (0.0, ResultStatus.no_detection),
        (0.4999999, ResultStatus.no_detection),
        (0.5, ResultStatus.potential_detection),
        (0.6999999, ResultStatus.potential_detection),
        (0.7, ResultStatus.detected),
        (1.0, ResultStatus.detected),
    ],
)
def test_threshold_edges(value, status):
    assert status_for(value, 0.5, 0.7) is status


def test_application_outputs_metrics_result_and_endpoint_fields():
    stats = {"x": {"hist": pad_hist([[0, 1, 2, 3], [0.0, 1.0, 2.0, 3.0, 4.0]])}}
    current = np.array([[0.5]] * 3 + [[1.5]] * 2 + [[2.5]] * 1 + [[np.nan]])
    ctx = MonitoringContext(
        "histogram-data-drift",
        {"uid": "e", "feature_names": ["x"], "feature_stats": stats},
        0.0,
        30.0,
        _batch(current),
        {"potential_threshold": 0.2, "detected_threshold": 0.3},
    )
    out = HistogramDataDriftApplication().do_tracking(ctx)
    metrics = {o.name: o.value for o in out if isinstance(o, Metric)}
    results = [o for o in out if isinstance(o, Result)]
    assert set(metrics) == {"hellinger_mean", "kld_mean", "tvd_mean"}
    assert len(results) == 1 and results[0].name == "general_drift"
    assert results[0].kind is ResultKind.data_drift
    assert results[0].status is ResultStatus.detected  # 0.697 >= configured 0.3
    assert results[0].extra_data["features"]["x"]["tvd"] == pytest.approx(2 / 3)
    assert ctx.endpoint_updates["drift_status"] == "detected"
    hist = ctx.endpoint_updates["current_stats"]["x"]["hist"]
    assert hist[0] == [0, 3, 2, 1, 0, 0] and hist[1][0] == -FLOAT_MAX
    assert ctx.endpoint_updates["current_stats"]["x"]["count"] == 6


def test_features_without_reference_or_values_are_skipped():
    stats = {"x": {"hist": [[1, 1], [0.0, 1.0, 2.0]]}}
    current = np.array([[np.nan, 1.0], [np.nan, 2.0]])
    assert histogram_drift(current, ["x", "y"], stats) is None


def test_features_with_different_bin_counts_are_analyzed_together():
    stats = {
        "x": {"hist": [[1, 2, 1], [0.0, 1.0, 2.0, 3.0]]},
        "y": {"hist": [[2, 1], [0.0, 5.0, 10.0]]},
    }
    window = np.array([[0.5, 1.0], [1.5, 6.0], [1.6, np.nan], [2.5, 2.0]])
    drift = histogram_drift(window, ["x", "y"], stats)
    assert drift is not None and drift.features == ["x", "y"]
    assert drift.general_drift == pytest.approx(0.0, abs=1e-9)
    assert [len(c) for c in drift.counts] == [5, 4]


def test_reference_values_are_derived_once_per_reference_object():
    from modelmon_daemon.applications.reference_cache import IdentityCache

    cache = IdentityCache(size=2)
    built = []
    a, b, c = {"x": 1}, {"x": 1}, {"x": 2}

    def build(tag):
        built.append(tag)
        return tag

    assert cache.get(a, "t", lambda: build("a")) == "a"
    assert cache.get(a, "t", lambda: build("again")) == "a"  # the same object: kept
    assert cache.get(b, "t", lambda: build("b")) == "b"  # equal, yet another object
    assert cache.get(c, "t", lambda: build("c")) == "c"
    assert len(cache) == 2 and cache.get(a, "t", lambda: build("a2")) == "a2"  # evicted
    assert built == ["a", "b", "c", "a2"]


def test_discard_drops_every_entry_derived_from_an_object():
    from modelmon_daemon.applications.reference_cache import IdentityCache

    cache = IdentityCache(size=10)
    a, b = {"x": 1}, {"x": 1}
    for tag in ("bins", "bounds"):
        cache.get(a, tag, lambda tag=tag: tag)
    cache.get(b, "bins", lambda: "b")
    assert cache.discard(a, "not a source") == 2 and len(cache) == 1
    assert cache.discard(a) == 0
    assert cache.get(b, "bins", lambda: "rebuilt") == "b"  # the other object's entry stays


def test_an_application_actor_lets_derived_values_go_with_its_records(monkeypatch):
    """Derived values live as long as the actor keeps the record: a new version or an
    eviction from its spec cache drops them, so the derived cache never outgrows it."""
    from modelmon_daemon.actors import application as application_module
    from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
    from modelmon_daemon.config import Settings
    from modelmon_daemon.core.records import WindowMeta, pack, unpack_outputs
    from tests.helpers import make_batch, make_spec

    monkeypatch.setattr(application_module, "SPEC_CACHE_SIZE", 2)
    actor = application_module.ApplicationActor(0, Settings().to_dict())
    rng = np.random.default_rng(3)
    batches = [make_batch(np.arange(200.0), rng.normal(size=(200, 2)))]

    def run(uid: str, version: str, seed: int) -> None:
        record = pack(make_spec(uid, seed=seed).to_dict())
        jobs = [(0, uid, version, WindowMeta(uid, 0.0, 60.0, [1], 200))]
        packed, missing = actor.run_many(batches, jobs, {uid: (version, record)})
        out = unpack_outputs(packed)
        assert missing == [] and out[0] is not None
        assert not [failure for _, _, failure, _ in out[0] if failure]

    before = len(REFERENCE_CACHE)
    run("e0", "v1", 0)
    per_endpoint = len(REFERENCE_CACHE) - before
    assert per_endpoint >= 2  # histogram bins, drift-metrics, bounds: at least two
    first_stats = actor.spec_cache["e0"][1]["feature_stats"]
    run("e1", "v1", 1)
    assert len(REFERENCE_CACHE) - before == 2 * per_endpoint
    run("e2", "v1", 2)  # e0 leaves the spec cache (size 2), and its derived values too
    assert "e0" not in actor.spec_cache
    assert len(REFERENCE_CACHE) - before == 2 * per_endpoint
    assert REFERENCE_CACHE.discard(first_stats) == 0
    run("e1", "v2", 5)  # a new version replaces the old one's values
    assert len(REFERENCE_CACHE) - before == 2 * per_endpoint
