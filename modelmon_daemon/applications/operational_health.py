"""Operational health of an endpoint per window: latency and error rate against
configurable thresholds, as system_performance results (so they can alert), plus the
window's prediction count and rate as metrics."""

from __future__ import annotations

import numpy as np

from modelmon_daemon.analytics.stats import percentile
from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.core.enums import ResultKind, ResultStatus

NAME = "operational-health"


def threshold_status(value: float, potential: float, detected: float) -> ResultStatus:
    """>= detected: detected; >= potential: potential; both 0 (off): irrelevant."""
    if not potential and not detected:
        return ResultStatus.irrelevant
    if detected and value >= detected:
        return ResultStatus.detected
    if potential and value >= potential:
        return ResultStatus.potential_detection
    return ResultStatus.no_detection


class OperationalHealthApplication:
    NAME = NAME

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        s = context.settings
        batch = context.batch
        rows = len(batch)
        predictions = batch.predictions()  # MLRun's sampling: the predictions rows stand for
        out: list[Result | Metric] = [
            Metric("predictions", predictions),
            Metric("predictions_per_second", predictions / max(context.end - context.start, 1e-9)),
        ]
        flags = batch.errors.tolist()
        errors = len(flags) - flags.count(None)
        error_rate = errors / rows if rows else 0.0
        out.append(
            Result(
                "error_rate",
                error_rate,
                ResultKind.system_performance,
                threshold_status(
                    error_rate,
                    s.get("error_rate_potential", 0.0),
                    s.get("error_rate_detected", 0.0),
                ),
                {"errors": errors, "rows": rows},
            )
        )
        known = batch.latency_us[~np.isnan(batch.latency_us)]
        if known.size:
            latency = float(known.mean())
            out.append(
                Result(
                    "latency_avg",
                    latency,
                    ResultKind.system_performance,
                    threshold_status(
                        latency,
                        s.get("latency_potential_us", 0.0),
                        s.get("latency_detected_us", 0.0),
                    ),
                    {"unit": "us", "p95": percentile(known, 95)},
                )
            )
        if s.get("no_traffic_after", 0.0):
            out.append(
                Result(
                    "no_traffic",
                    0.0,
                    ResultKind.system_performance,
                    ResultStatus.no_detection,
                    {"after_s": s["no_traffic_after"]},
                )
            )
        return out
