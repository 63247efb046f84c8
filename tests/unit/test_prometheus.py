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
        endpoints=[
            {
                "uid": "ep1",
                "predictions_count_5m": 12,
                "predictions_per_second": 0.2,
                "latency_avg_5m": 1500.0,
                "latency_avg_1h": None,
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
    exporter.request_seconds.labels("/v1/events").observe(0.003)
    text = exporter.render(snapshot()).decode()
    got = samples(text)
    assert got[("modelmon_ingest_requests_total", (("route", "mlrun_events"),))] == 3
    assert got[("modelmon_ingest_events_total", ())] == 30
    assert got[("modelmon_endpoint_latency_avg_5m_seconds", (("endpoint", "ep1"),))] == 0.0015
    assert got[("modelmon_endpoint_errors_total", (("endpoint", "ep1"),))] == 1
    key = ("modelmon_endpoint_drift", (("endpoint", "ep1"), ("measure", "general_drift")))
    assert got[key] == 0.8
    assert got[("modelmon_endpoint_drift_status", (("endpoint", "ep1"),))] == 2
    info = [k for k in got if k[0] == "modelmon_endpoint_info"]
    assert len(info) == 1 and dict(info[0][1])["endpoint"] == "ep1" and got[info[0]] == 1
    assert got[("modelmon_alert_active", (("alert", "drift"),))] == 1
    assert got[("modelmon_ingest_request_duration_seconds_count", (("route", "/v1/events"),))] == 1
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
