"""Multivariate drift: the window's mean PCA reconstruction error against the reference's
own variation (see multivariate.py). Needs reference data at registration."""

from __future__ import annotations

from typing import Any

from modelmon_daemon.analytics.multivariate import (
    ModelArrays,
    model_arrays,
    reconstruction_errors,
    window_z,
)
from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
from modelmon_daemon.core.enums import ResultKind, ResultStatus

NAME = "multivariate-drift"


def _arrays(model: dict[str, Any]) -> ModelArrays:
    """The PCA model's arrays, once per model object (see reference_cache)."""
    return REFERENCE_CACHE.get(model, "pca", lambda: model_arrays(model))


class MultivariateDriftApplication:
    NAME = NAME

    def prepare(self, endpoint: dict[str, Any]) -> None:
        """The PCA model's arrays, built before the endpoint's first window."""
        model = endpoint.get("multivariate")
        if model:
            _arrays(model)

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        model = context.endpoint.get("multivariate")
        if not model or len(context.batch) == 0:
            return []
        columns = model.get("columns")
        features = context.features if columns is None else context.features[:, columns]
        arrays = _arrays(model)
        errors = reconstruction_errors(features, model, arrays)
        z = window_z(errors, model)
        potential = float(context.settings.get("z_potential", 3.0))
        detected = float(context.settings.get("z_detected", 5.0))
        if len(context.batch) < int(context.settings.get("min_sample_size", 0)):
            status = ResultStatus.irrelevant
        elif z >= detected:
            status = ResultStatus.detected
        elif z >= potential:
            status = ResultStatus.potential_detection
        else:
            status = ResultStatus.no_detection
        return [
            Metric("reconstruction_error_z", z),
            Result(
                "reconstruction_error",
                float(errors.mean()),
                ResultKind.data_drift,
                status,
                {
                    "z": z,
                    "reference_mean": model["row_error_mean"],
                    "reference_std": model["row_error_std"],
                    "components": len(model["components"]),
                    "explained_variance": model["explained_variance"],
                    "thresholds": {"z_potential": potential, "z_detected": detected},
                },
            ),
        ]
