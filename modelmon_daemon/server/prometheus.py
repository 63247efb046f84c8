"""Prometheus exposition of the daemon: ingestion counters and latency histogram, the log
backlog, controller and notification counters, and per-endpoint gauges (operational
metrics, latest drift, latest result values, alert states).

The registry is injected; everything that lives elsewhere (LMDB, stream actors) is read
into a Snapshot by the HTTP handler just before a scrape, and a custom collector turns
the snapshot into metric families. Per-feature series only with `metrics.per_feature`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from modelmon_daemon.analytics.opsmetrics import CumulativeHistogram

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class RouteDurations:
    """Request durations per route, a histogram each. Kept here rather than in
    prometheus_client's Histogram: no process-wide state (its `_created` series need a
    global switch to turn off)."""

    def __init__(self) -> None:
        self.routes: dict[str, CumulativeHistogram] = {}

    def observe(self, route: str, seconds: float) -> None:
        hist = self.routes.get(route)
        if hist is None:
            hist = self.routes[route] = CumulativeHistogram(LATENCY_BUCKETS)
        hist.observe_one(seconds)


@dataclass
class Snapshot:
    requests: dict[str, int] = field(default_factory=dict)
    rejected: dict[str, int] = field(default_factory=dict)
    events: int = 0
    rows: int = 0
    wal_records: int = 0
    pending_rows: int = 0
    pending_rows_limit: int = 0
    storage: dict[str, Any] = field(default_factory=dict)
    ticks: int = 0
    tick_errors: int = 0
    notifications_delivered: int = 0
    notification_failures: int = 0
    log: dict[str, float] = field(default_factory=dict)  # the durability log's CommitLog.stats
    endpoints: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    per_feature: bool = False


ENDPOINT_GAUGES = {
    "buffered_events": (
        "modelmon_endpoint_buffered_events",
        "Events waiting for their window to close.",
    ),
}
ENDPOINT_COUNTERS = {
    "events_total": ("modelmon_endpoint_events", "Prediction rows received."),
    "predictions_total": (
        "modelmon_endpoint_predictions",
        "Predictions the received rows stand for (MLRun's sampling scales them).",
    ),
    "error_count": ("modelmon_endpoint_errors", "Error events received."),
    "late_events": (
        "modelmon_endpoint_late_events",
        "Rows that arrived after their window closed.",
    ),
}
DRIFT_MEASURES = ("general_drift", "tvd_mean", "hellinger_mean", "kld_mean")
STATUS_VALUES = {"no_detection": 0, "potential_detection": 1, "detected": 2}


def metric_names() -> set[str]:
    """Every metric family name the daemon exports (Grafana dashboards are checked against it)."""
    names = {
        "modelmon_ingest_requests_total",
        "modelmon_ingest_rejected_total",
        "modelmon_ingest_events_total",
        "modelmon_ingest_rows_total",
        "modelmon_ingest_request_duration_seconds",
        "modelmon_wal_pending_records",
        "modelmon_log_commits_total",
        "modelmon_log_requests_total",
        "modelmon_log_commit_seconds_total",
        "modelmon_pending_rows",
        "modelmon_pending_rows_limit",
        "modelmon_lmdb_map_size_bytes",
        "modelmon_lmdb_used_bytes",
        "modelmon_lmdb_full",
        "modelmon_controller_ticks_total",
        "modelmon_controller_tick_errors_total",
        "modelmon_notifications_delivered_total",
        "modelmon_notification_failures_total",
        "modelmon_endpoints",
        "modelmon_endpoint_info",
        "modelmon_endpoint_drift",
        "modelmon_endpoint_drift_status",
        "modelmon_endpoint_result_value",
        "modelmon_endpoint_result_status",
        "modelmon_endpoint_feature_drift",
        "modelmon_endpoint_latency_seconds",
        "modelmon_alert_active",
        "modelmon_alert_notifications_total",
    }
    names |= {name for name, _ in ENDPOINT_GAUGES.values()}
    names |= {f"{name}_total" for name, _ in ENDPOINT_COUNTERS.values()}
    return names


class _SnapshotCollector(Collector):
    def __init__(self, exporter: MetricsExporter) -> None:
        self.exporter = exporter

    def collect(self) -> Iterator[Metric]:
        s = self.exporter.snapshot
        c = CounterMetricFamily(
            "modelmon_ingest_requests", "HTTP ingestion requests.", labels=["route"]
        )
        for route, n in sorted(s.requests.items()):
            c.add_metric([route], n)
        yield c
        c = CounterMetricFamily(
            "modelmon_ingest_rejected", "Requests answered with an error.", labels=["status"]
        )
        for status, n in sorted(s.rejected.items()):
            c.add_metric([status], n)
        yield c
        yield CounterMetricFamily(
            "modelmon_ingest_events", "Events accepted (durable).", value=s.events
        )
        yield CounterMetricFamily("modelmon_ingest_rows", "Prediction rows accepted.", value=s.rows)
        yield GaugeMetricFamily(
            "modelmon_wal_pending_records",
            "Durability-log records whose window is not in Parquet yet.",
            value=s.wal_records,
        )
        for key, name, text in (
            ("commits", "modelmon_log_commits", "Durable group commits of the log."),
            ("requests", "modelmon_log_requests", "Requests made durable by those commits."),
            (
                "commit_seconds",
                "modelmon_log_commit_seconds",
                "Wall time inside the log's commits (fsync included).",
            ),
        ):
            yield CounterMetricFamily(name, text, value=float(s.log.get(key, 0)))
        yield GaugeMetricFamily(
            "modelmon_pending_rows",
            "Rows acknowledged whose window is not committed yet (429 past the limit).",
            value=s.pending_rows,
        )
        yield GaugeMetricFamily(
            "modelmon_pending_rows_limit",
            "daemon.max_pending_rows in effect.",
            value=s.pending_rows_limit,
        )
        for key, name, text in (
            ("map_size_bytes", "modelmon_lmdb_map_size_bytes", "LMDB map size (grows on demand)."),
            ("used_bytes", "modelmon_lmdb_used_bytes", "LMDB bytes in use."),
        ):
            yield GaugeMetricFamily(name, text, value=float(s.storage.get(key, 0)))
        yield GaugeMetricFamily(
            "modelmon_lmdb_full",
            "1 while writes are refused because the map is at its maximum size.",
            value=1.0 if s.storage.get("full") else 0.0,
        )
        yield CounterMetricFamily("modelmon_controller_ticks", "Controller ticks.", value=s.ticks)
        yield CounterMetricFamily(
            "modelmon_controller_tick_errors",
            "Failed endpoint ticks (retried).",
            value=s.tick_errors,
        )
        yield CounterMetricFamily(
            "modelmon_notifications_delivered",
            "Notifications delivered.",
            value=s.notifications_delivered,
        )
        yield CounterMetricFamily(
            "modelmon_notification_failures",
            "Failed delivery attempts.",
            value=s.notification_failures,
        )
        yield GaugeMetricFamily(
            "modelmon_endpoints", "Registered endpoints.", value=len(s.endpoints)
        )
        yield from self._endpoints(s)
        durations = HistogramMetricFamily(
            "modelmon_ingest_request_duration_seconds",
            "Time to answer an HTTP request.",
            labels=["route"],
        )
        for route, hist in sorted(self.exporter.request_seconds.routes.items()):
            durations.add_metric([route], hist.buckets(), hist.sum)
        yield durations
        active = GaugeMetricFamily(
            "modelmon_alert_active", "Active entities of an alert.", labels=["alert"]
        )
        sent = CounterMetricFamily(
            "modelmon_alert_notifications", "Notifications an alert sent.", labels=["alert"]
        )
        for a in s.alerts:
            active.add_metric([a["name"]], len(a["active_entities"]))
            sent.add_metric([a["name"]], a["notifications_sent"])
        yield active
        yield sent

    def _endpoints(self, s: Snapshot) -> Iterator[Metric]:
        gauges = {
            k: GaugeMetricFamily(n, h, labels=["endpoint"]) for k, (n, h) in ENDPOINT_GAUGES.items()
        }
        counters = {
            k: CounterMetricFamily(n, h, labels=["endpoint"])
            for k, (n, h) in ENDPOINT_COUNTERS.items()
        }
        drift = GaugeMetricFamily(
            "modelmon_endpoint_drift",
            "Latest histogram drift of the endpoint.",
            labels=["endpoint", "measure"],
        )
        status = GaugeMetricFamily(
            "modelmon_endpoint_drift_status",
            "Latest drift status: 0 none, 1 potential, 2 detected.",
            labels=["endpoint"],
        )
        value = GaugeMetricFamily(
            "modelmon_endpoint_result_value",
            "Latest value of each result and metric.",
            labels=["endpoint", "application", "name"],
        )
        rstatus = GaugeMetricFamily(
            "modelmon_endpoint_result_status",
            "Latest status of each result (-1 irrelevant .. 2 detected).",
            labels=["endpoint", "application", "name"],
        )
        feature = GaugeMetricFamily(
            "modelmon_endpoint_feature_drift",
            "Latest per-feature drift.",
            labels=["endpoint", "feature", "measure"],
        )
        latency = HistogramMetricFamily(
            "modelmon_endpoint_latency_seconds",
            "Model latency of the logged predictions (from microsec / latency_us).",
            labels=["endpoint"],
        )
        info = GaugeMetricFamily(
            "modelmon_endpoint_info",
            "Always 1: the endpoint's identity, to show names instead of uids (join on endpoint).",
            labels=["endpoint", "project", "name", "model", "version", "model_type"],
        )
        for e in s.endpoints:
            uid = e["uid"]
            info.add_metric(
                [
                    uid,
                    str(e.get("project") or ""),
                    str(e.get("name") or ""),
                    str(e.get("model") or ""),
                    str(e.get("version") or ""),
                    str(e.get("model_type") or ""),
                ],
                1.0,
            )
            for key in ENDPOINT_GAUGES:
                if e.get(key) is not None:
                    gauges[key].add_metric([uid], float(e[key]))
            for key in ENDPOINT_COUNTERS:
                counters[key].add_metric([uid], float(e.get(key) or 0))
            hist = e.get("latency_seconds")
            if hist:
                latency.add_metric([uid], [tuple(b) for b in hist["buckets"]], hist["sum"])
            measures = e.get("drift_measures") or {}
            for m in DRIFT_MEASURES:
                if measures.get(m) is not None:
                    drift.add_metric([uid, m], float(measures[m]))
            if e.get("drift_status") in STATUS_VALUES:
                status.add_metric([uid], STATUS_VALUES[e["drift_status"]])
            for r in e.get("latest_results", []):
                if r.get("value") is not None:
                    value.add_metric([uid, r["application"], r["name"]], float(r["value"]))
                if r.get("status") is not None:
                    rstatus.add_metric([uid, r["application"], r["name"]], float(r["status"]))
            if s.per_feature:
                for name, per in (measures.get("features") or {}).items():
                    for m, v in per.items():
                        feature.add_metric([uid, name, m], float(v))
        yield from gauges.values()
        yield from counters.values()
        yield from (latency, info, drift, status, value, rstatus, feature)


class MetricsExporter:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        self.snapshot = Snapshot()
        self.request_seconds = RouteDurations()
        self.registry.register(_SnapshotCollector(self))

    def render(self, snapshot: Snapshot) -> bytes:
        self.snapshot = snapshot
        return bytes(generate_latest(self.registry))
