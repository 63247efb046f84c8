"""Prediction drift: the distribution of the model's outputs (first output) against the
reference predictions given at registration; histogram distances for numeric outputs,
category distances with JS, chi-square and unseen classes for categorical ones. The value
is mean(TVD, Hellinger), like general_drift, with the same thresholds."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelmon_daemon.analytics.categorical import categorical_drift, category_counts
from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.applications.histogram_data_drift import histogram_drift, status_for
from modelmon_daemon.core.enums import ResultKind, ResultStatus

NAME = "prediction-drift"
NUMERIC_MIN_DISTINCT = 20


def prediction_stats(values: list[Any]) -> dict[str, Any]:
    """Numeric outputs with many distinct values -> MLRun-format stats with a padded
    histogram; anything else -> category counts."""
    present = [v for v in values if v is not None and not (isinstance(v, float) and v != v)]
    if not present:
        raise ValueError("reference predictions are all null")
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in present)
    if numeric and len(set(present)) > NUMERIC_MIN_DISTINCT:
        column = np.asarray(present, dtype=np.float64)[:, None]
        return {"kind": "numeric", **reference_feature_stats(column, ["prediction"])["prediction"]}
    return {"kind": "categorical", "counts": category_counts(present)}


class PredictionDriftApplication:
    NAME = NAME

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        reference = context.endpoint.get("prediction_stats")
        if not reference or not context.batch.outputs:
            return []
        outputs = context.batch.outputs[0]
        potential = float(context.settings.get("potential_threshold", 0.5))
        detected = float(context.settings.get("detected_threshold", 0.7))
        if reference["kind"] == "numeric":
            try:
                column = outputs.astype(np.float64)[:, None]
            except (TypeError, ValueError):
                return [
                    Result(
                        "prediction_drift",
                        1.0,
                        ResultKind.data_drift,
                        ResultStatus.detected,
                        {"error": "outputs are no longer numeric"},
                    )
                ]
            drift = histogram_drift(column, ["prediction"], {"prediction": reference})
            if drift is None:
                return []
            value, n = drift.general_drift, int(drift.counts[0].sum())
            extra: dict[str, Any] = {
                "tvd": drift.tvd_mean,
                "hellinger": drift.hellinger_mean,
                "kld": drift.kld_mean,
            }
        else:
            found = categorical_drift(category_counts(outputs.tolist()), reference["counts"])
            if "drift" not in found:
                return []
            value, n = found["drift"], found["n"]
            keys = ("tvd", "hellinger", "js", "chi2", "p_value", "unseen", "unseen_count")
            extra = {k: found[k] for k in keys}
        status = status_for(value, potential, detected)
        if n < int(context.settings.get("min_sample_size", 0)):
            status = ResultStatus.irrelevant
        return [
            Metric("prediction_tvd", float(extra["tvd"])),
            Result(
                "prediction_drift",
                value,
                ResultKind.data_drift,
                status,
                {**extra, "kind": reference["kind"], "sample_size": n},
            ),
        ]
