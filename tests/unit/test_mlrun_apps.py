"""Applications written for MLRun run with one changed import line: the context has
MLRun's attributes, and results may be any object with MLRun's result attributes."""

from __future__ import annotations

from enum import Enum, IntEnum

import numpy as np

from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.applications.runner import run_application
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import EndpointSpec, WindowMeta
from tests.helpers import make_batch
from tests.unit.mlrun_style_app import MeanShiftApplication

NAMES = ["x0", "x1"]


def endpoint() -> dict:
    rng = np.random.default_rng(0)
    spec = EndpointSpec(
        uid="ep-mlrun",
        project="p",
        name="churn",
        feature_names=NAMES,
        label_names=["output"],
        feature_stats=reference_feature_stats(rng.normal(size=(2000, 2)), NAMES),
        model_class="ChurnModel",
    )
    return spec.to_dict()


def window(shift: float, n: int = 500):
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(n, 2))
    feats[:, 1] += shift
    return make_batch(np.linspace(60.0, 119.0, n), feats)


def meta(n: int = 500) -> WindowMeta:
    return WindowMeta(uid="ep-mlrun", start=60.0, end=120.0, seqs=[1], rows=n)


def test_an_mlrun_application_runs_unchanged():
    out = run_application("mean-shift", MeanShiftApplication(), endpoint(), meta(), window(2.0), {})
    assert out.failure is None
    result, metric = out.results
    assert (result.name, result.type, result.kind, result.status) == (
        "mean_shift",
        "result",
        ResultKind.data_drift,
        ResultStatus.detected,
    )
    assert result.value > 1.5 and set(result.extra["per_feature"]) == set(NAMES)
    assert (metric.name, metric.type, metric.value) == ("rows", "metric", 500.0)
    calm = run_application(
        "mean-shift", MeanShiftApplication(), endpoint(), meta(), window(0.0), {}
    )
    assert calm.results[0].status == ResultStatus.no_detection


def test_the_context_has_mlruns_attributes():
    from modelmon_daemon.applications.base import MonitoringContext

    ep = endpoint()
    batch = window(0.5)
    context = MonitoringContext("app", ep, 60.0, 120.0, batch)
    assert context.endpoint_id == "ep-mlrun" and context.endpoint_name == "churn"
    assert context.start_infer_time.isoformat() == "1970-01-01T00:01:00+00:00"
    assert context.end_infer_time.timestamp() == 120.0
    assert context.model_endpoint.metadata.uid == "ep-mlrun"
    assert context.model_endpoint.spec.model_class == "ChurnModel"
    assert list(context.sample_df.columns[:2]) == NAMES
    stats = context.sample_df_stats["x1"]
    counts, edges = stats["hist"]
    expected, _ = np.histogram(batch.features[:, 1], bins=np.asarray(edges))
    assert counts == expected.tolist()
    assert stats["mean"] == np.mean(batch.features[:, 1])
    context.logger.info("keyword fields as MLRun's logger takes them", rows=500)


class KindApp(Enum):  # MLRun's ResultKindApp is a plain Enum
    model_performance = 2


class StatusApp(IntEnum):
    potential_detection = 1


class ForeignResult:
    def __init__(self) -> None:
        self.name, self.value = "foreign", 0.25
        self.kind, self.status = KindApp.model_performance, StatusApp.potential_detection
        self.extra_data = {"source": "another library"}


class ForeignApp:
    def do_tracking(self, context):
        return ForeignResult()


def test_results_with_mlruns_attributes_are_taken():
    out = run_application("foreign", ForeignApp(), endpoint(), meta(), window(0.0), {})
    (record,) = out.results
    assert (record.kind, record.status, record.extra) == (
        ResultKind.model_performance,
        ResultStatus.potential_detection,
        {"source": "another library"},
    )
