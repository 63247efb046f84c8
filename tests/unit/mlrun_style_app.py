"""A monitoring application as MLRun's documentation writes one; only the import line
differs from the MLRun version."""

import numpy as np

from modelmon_daemon.applications.mlrun_compat import (
    ModelMonitoringApplicationBase,
    ModelMonitoringApplicationMetric,
    ModelMonitoringApplicationResult,
    ResultKindApp,
    ResultStatusApp,
)


class MeanShiftApplication(ModelMonitoringApplicationBase):
    def do_tracking(self, monitoring_context):
        df = monitoring_context.sample_df
        stats = monitoring_context.feature_stats
        monitoring_context.logger.info(
            "window",
            endpoint_id=monitoring_context.endpoint_id,
            start=str(monitoring_context.start_infer_time),
        )
        shifts = {
            name: abs(float(np.nanmean(df[name])) - stats[name]["mean"]) / stats[name]["std"]
            for name in monitoring_context.model_endpoint.spec.feature_names
        }
        worst = max(shifts.values())
        status = ResultStatusApp.detected if worst > 1.0 else ResultStatusApp.no_detection
        return [
            ModelMonitoringApplicationResult(
                name="mean_shift",
                value=worst,
                kind=ResultKindApp.data_drift,
                status=status,
                extra_data={"per_feature": shifts},
            ),
            ModelMonitoringApplicationMetric(name="rows", value=len(monitoring_context.sample_df)),
        ]
