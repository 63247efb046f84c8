from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from modelmon_daemon.server.prometheus import MetricsExporter, Snapshot, metric_names


def snapshot(per_feature=False):
    return Snapshot(
        requests={"mlrun_events": 3},
        rejected={"400": 1},
        events=30,
        rows=31,
        wal_records=2,
        ticks=5,
        log={"commits": 4, "requests": 30, "commit_seconds": 0.012},
        endpoints=[
            {
                "uid": "ep1",
                "project": "shop",
                "name": "churn",
                "model": "churn",
                "version": "v2",
                "predictions_total": 62.0,
                "latency_seconds": {
                    "buckets": [["0.001", 1.0], ["0.01", 3.0], ["+Inf", 4.0]],
                    "sum": 0.05,
                    "count": 4.0,
                },
                "events_total": 31,
                "error_count": 1,
                "late_events": 0,
                "buffered_events": 4,
                "drift_status": "detected",
                "drift_measures": {
                    "general_drift": 0.8,
                    "tvd_mean": 0.7,
                    "hellinger_mean": 0.9,
                    "kld_mean": 3.0,
                    "features": {"f0": {"tvd": 0.7}},
                },
                "latest_results": [
                    {
                        "application": "histogram-data-drift",
                        "name": "general_drift",
                        "value": 0.8,
                        "status": 2,
                    }
                ],
            }
        ],
        alerts=[{"name": "drift", "active_entities": ["ep1.a.result.x"], "notifications_sent": 1}],
        per_feature=per_feature,
    )


def samples(text):
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_exposition_parses_and_follows_naming_conventions():
    exporter = MetricsExporter(CollectorRegistry())
    exporter.request_seconds.observe("/v1/events", 0.003)
    text = exporter.render(snapshot()).decode()
    got = samples(text)
    assert got[("modelmon_ingest_requests_total", (("route", "mlrun_events"),))] == 3
    assert got[("modelmon_ingest_events_total", ())] == 30
    assert got[("modelmon_log_commits_total", ())] == 4
    assert got[("modelmon_log_requests_total", ())] == 30
    assert got[("modelmon_log_commit_seconds_total", ())] == 0.012
    assert got[("modelmon_endpoint_predictions_total", (("endpoint", "ep1"),))] == 62.0
    bucket = ("modelmon_endpoint_latency_seconds_bucket", (("endpoint", "ep1"), ("le", "0.01")))
    assert got[bucket] == 3.0
    assert got[("modelmon_endpoint_latency_seconds_count", (("endpoint", "ep1"),))] == 4.0
    assert got[("modelmon_endpoint_latency_seconds_sum", (("endpoint", "ep1"),))] == 0.05
    assert not any(name.endswith("_created") for name, _ in got)
    assert got[("modelmon_endpoint_errors_total", (("endpoint", "ep1"),))] == 1
    key = ("modelmon_endpoint_drift", (("endpoint", "ep1"), ("measure", "general_drift")))
    assert got[key] == 0.8
    assert got[("modelmon_endpoint_drift_status", (("endpoint", "ep1"),))] == 2
    info = [k for k in got if k[0] == "modelmon_endpoint_info"]
    assert len(info) == 1 and got[info[0]] == 1
    assert {k: v for k, v in info[0][1] if k != "model_type"} == {
        "endpoint": "ep1",
        "project": "shop",
        "name": "churn",
        "model": "churn",
        "version": "v2",
    }
    assert got[("modelmon_alert_active", (("alert", "drift"),))] == 1
    assert got[("modelmon_ingest_request_duration_seconds_count", (("route", "/v1/events"),))] == 1
    le = (
        "modelmon_ingest_request_duration_seconds_bucket",
        (("le", "0.0025"), ("route", "/v1/events")),
    )
    assert got[le] == 0  # 3 ms is above 2.5 ms
    le = (
        "modelmon_ingest_request_duration_seconds_bucket",
        (("le", "0.005"), ("route", "/v1/events")),
    )
    assert got[le] == 1
    assert not any(name == "modelmon_endpoint_feature_drift" for name, _ in got)
    for family in text_string_to_metric_families(text):
        assert family.name.startswith("modelmon_") and family.documentation
        assert family.name + ("_total" if family.type == "counter" else "") in metric_names()


def test_per_feature_series_only_when_configured():
    text = MetricsExporter(CollectorRegistry()).render(snapshot(per_feature=True)).decode()
    key = (
        "modelmon_endpoint_feature_drift",
        (("endpoint", "ep1"), ("feature", "f0"), ("measure", "tvd")),
    )
    assert samples(text)[key] == 0.7


def test_the_latency_histogram_agrees_with_numpy():
    """Cumulative `le` counts are np.sum(values <= bound) for every bound."""
    import numpy as np

    from modelmon_daemon.analytics.opsmetrics import LATENCY_BUCKETS_SECONDS, CumulativeHistogram

    rng = np.random.default_rng(3)
    values = np.concatenate([rng.lognormal(-5, 2, 5000), [0.001, 0.01, np.nan, 50.0]])
    hist = CumulativeHistogram()
    hist.observe(values[:2000])
    hist.observe(values[2000:])
    known = values[~np.isnan(values)]
    for (le, count), bound in zip(hist.buckets(), [*LATENCY_BUCKETS_SECONDS, np.inf], strict=True):
        assert count == np.sum(known <= bound), le
    assert hist.count == known.size and np.isclose(hist.sum, known.sum())


def test_importing_the_exporter_changes_nothing_global():
    import subprocess
    import sys

    code = (
        "import prometheus_client.metrics as m; before = m._use_created; "
        "import modelmon_daemon.server.prometheus; "
        "assert m._use_created == before, 'import switched _created off'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
