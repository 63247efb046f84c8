"""MLRun's histogram data drift application, exactly: TVD, Hellinger and KLD per feature
on the reference's padded histogram edges, their means as metrics, and `general_drift`
= mean(hellinger_mean, tvd_mean) as a data_drift result with configurable thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from modelmon_daemon.applications.base import Metric, MonitoringContext, Result
from modelmon_daemon.distances import (
    hellinger_distance,
    kl_divergence,
    probabilities,
    total_variance_distance,
)
from modelmon_daemon.enums import ResultKind, ResultStatus
from modelmon_daemon.stats import (
    binned_counts,
    current_feature_stats,
    padded_edges_matrix,
    reference_probabilities,
)

NAME = "histogram-data-drift"


def status_for(value: float, potential: float, detected: float) -> ResultStatus:
    """MLRun's DataDriftClassifier: >= detected, else >= potential, else no detection."""
    if value >= detected:
        return ResultStatus.detected
    if value >= potential:
        return ResultStatus.potential_detection
    return ResultStatus.no_detection


@dataclass
class HistogramDrift:
    """The numbers of one window, all features at once."""

    features: list[str]
    tvd: np.ndarray
    hellinger: np.ndarray
    kld: np.ndarray
    counts: np.ndarray
    edges: np.ndarray

    @property
    def tvd_mean(self) -> float:
        return float(self.tvd.mean())

    @property
    def hellinger_mean(self) -> float:
        return float(self.hellinger.mean())

    @property
    def kld_mean(self) -> float:
        return float(self.kld.mean())

    @property
    def general_drift(self) -> float:
        return (self.hellinger_mean + self.tvd_mean) / 2.0

    def per_feature(self) -> dict[str, dict[str, float]]:
        return {
            name: {
                "tvd": float(self.tvd[j]),
                "hellinger": float(self.hellinger[j]),
                "kld": float(self.kld[j]),
            }
            for j, name in enumerate(self.features)
        }


def histogram_drift(
    matrix: np.ndarray, feature_names: list[str], feature_stats: dict[str, Any]
) -> HistogramDrift | None:
    """Drift of every feature that has a reference histogram and at least one value."""
    columns = [j for j, n in enumerate(feature_names) if "hist" in feature_stats.get(n, {})]
    if not columns:
        return None
    names = [feature_names[j] for j in columns]
    edges = padded_edges_matrix(feature_stats, names)
    counts = binned_counts(matrix[:, columns], edges)
    present = counts.sum(axis=1) > 0
    if not present.any():
        return None
    names = [n for n, keep in zip(names, present, strict=True) if keep]
    counts, edges = counts[present], edges[present]
    t = probabilities(counts.astype(np.float64))
    u = reference_probabilities(feature_stats, names)
    return HistogramDrift(
        features=names,
        tvd=total_variance_distance(t, u),
        hellinger=hellinger_distance(t, u),
        kld=kl_divergence(t, u),
        counts=counts,
        edges=edges,
    )


class HistogramDataDriftApplication:
    NAME = NAME

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        potential = float(context.settings.get("potential_threshold", 0.5))
        detected = float(context.settings.get("detected_threshold", 0.7))
        drift = histogram_drift(context.features, context.feature_names, context.feature_stats)
        if drift is None:
            return []
        value = drift.general_drift
        status = status_for(value, potential, detected)
        per_feature = drift.per_feature()
        context.endpoint_updates.update(
            {
                "current_stats": current_feature_stats(
                    context.features[:, [context.feature_names.index(n) for n in drift.features]],
                    drift.features, drift.edges, drift.counts,
                ),
                "drift_measures": {
                    "tvd_mean": drift.tvd_mean,
                    "hellinger_mean": drift.hellinger_mean,
                    "kld_mean": drift.kld_mean,
                    "general_drift": value,
                    "features": per_feature,
                },
                "drift_status": status.name,
            }
        )
        return [
            Metric("hellinger_mean", drift.hellinger_mean),
            Metric("kld_mean", drift.kld_mean),
            Metric("tvd_mean", drift.tvd_mean),
            Result(
                "general_drift",
                value,
                ResultKind.data_drift,
                status,
                extra_data={
                    "features": per_feature,
                    "thresholds": {"potential": potential, "detected": detected},
                },
            ),
        ]
