"""Monitoring applications: built-ins by name, user ones by import path."""

from __future__ import annotations

from typing import Any

from modelmon_daemon.applications.base import (
    Metric,
    MonitoringContext,
    Result,
    application_name,
    load_user_application,
    validate_outputs,
)
from modelmon_daemon.applications.data_quality import DataQualityApplication
from modelmon_daemon.applications.drift_metrics import DriftMetricsApplication
from modelmon_daemon.applications.histogram_data_drift import HistogramDataDriftApplication
from modelmon_daemon.applications.multivariate_drift import MultivariateDriftApplication
from modelmon_daemon.applications.operational_health import OperationalHealthApplication
from modelmon_daemon.applications.performance_estimation import PerformanceEstimationApplication
from modelmon_daemon.applications.prediction_drift import PredictionDriftApplication

BUILTIN_APPLICATIONS: dict[str, type] = {
    HistogramDataDriftApplication.NAME: HistogramDataDriftApplication,
    OperationalHealthApplication.NAME: OperationalHealthApplication,
    DriftMetricsApplication.NAME: DriftMetricsApplication,
    DataQualityApplication.NAME: DataQualityApplication,
    MultivariateDriftApplication.NAME: MultivariateDriftApplication,
    PredictionDriftApplication.NAME: PredictionDriftApplication,
    PerformanceEstimationApplication.NAME: PerformanceEstimationApplication,
}


def build_applications(builtin: list[str], user: list[str]) -> dict[str, Any]:
    """name -> application instance, built-ins first."""
    apps: dict[str, Any] = {name: BUILTIN_APPLICATIONS[name]() for name in builtin}
    for path in user:
        app = load_user_application(path)
        apps[application_name(app)] = app
    return apps


__all__ = [
    "BUILTIN_APPLICATIONS",
    "Metric",
    "MonitoringContext",
    "Result",
    "application_name",
    "build_applications",
    "load_user_application",
    "validate_outputs",
]
