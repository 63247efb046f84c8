"""MLRun's application API under its own names, so a monitoring application written for
MLRun runs here with one changed line:

    from mlrun.model_monitoring.applications import (    # before
    from modelmon_daemon.applications.mlrun_compat import (  # after
        ModelMonitoringApplicationBase, ModelMonitoringApplicationResult, ...)

The context passed to `do_tracking` has MLRun's attributes (`sample_df`,
`sample_df_stats`, `feature_stats`, `start_infer_time`, `end_infer_time`, `endpoint_id`,
`endpoint_name`, `model_endpoint`, `logger`); results may also be MLRun's own classes when
MLRun is installed (any object with their attributes is taken)."""

from __future__ import annotations

from typing import Any

from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.core.enums import ResultKind, ResultStatus

ResultKindApp = ResultKind
ResultStatusApp = ResultStatus
MonitoringApplicationContext = MonitoringContext


# MLRun's result and metric take the same fields, in the same order, as ours
ModelMonitoringApplicationResult = Result
ModelMonitoringApplicationMetric = Metric


class ModelMonitoringApplicationBase:
    """Subclass and implement do_tracking(monitoring_context)."""

    def do_tracking(self, monitoring_context: MonitoringContext) -> Any:
        raise NotImplementedError


__all__ = [
    "ModelMonitoringApplicationBase",
    "ModelMonitoringApplicationMetric",
    "ModelMonitoringApplicationResult",
    "MonitoringApplicationContext",
    "ResultKindApp",
    "ResultStatusApp",
]
