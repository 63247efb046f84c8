"""MLRun's histogram data drift application, exactly: TVD, Hellinger and KLD per feature
on the reference's padded histogram edges, their means as metrics, and `general_drift`
= mean(hellinger_mean, tvd_mean) as a data_drift result with configurable thresholds."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from modelmon_daemon.analytics.calibration import calibrated_thresholds
from modelmon_daemon.analytics.distances import (
    hellinger_distance,
    kl_divergence,
    probabilities,
    total_variance_distance,
)
from modelmon_daemon.analytics.stats import (
    BinPlan,
    bin_plan,
    binned_counts,
    current_feature_stats,
    padded_edges_matrix,
    reference_probabilities,
)
from modelmon_daemon.applications.base import (
    Metric,
    MonitoringContext,
    Result,
    endpoint_context,
)
from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
from modelmon_daemon.core.enums import ResultKind, ResultStatus

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
    counts: list[np.ndarray]
    edges: list[np.ndarray]

    @cached_property
    def tvd_mean(self) -> float:
        return float(self.tvd.mean())

    @cached_property
    def hellinger_mean(self) -> float:
        return float(self.hellinger.mean())

    @cached_property
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


def _reference_bins(
    feature_stats: dict[str, Any], names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, BinPlan]:
    """(padded edges, reference probabilities, bin plan) of features, once per reference
    (see reference_cache)."""

    def build() -> tuple[np.ndarray, np.ndarray, BinPlan]:
        edges = padded_edges_matrix(feature_stats, list(names))
        return edges, reference_probabilities(feature_stats, list(names)), bin_plan(edges)

    return REFERENCE_CACHE.get(feature_stats, ("bins", names), build)


def histogram_groups(feature_names: list[str], feature_stats: dict[str, Any]) -> list[list[int]]:
    """The columns of the features with a reference histogram, grouped by their number of
    bins: each group is binned in one call (the usual case is one group: every reference
    has 20 bins)."""
    groups: dict[int, list[int]] = {}
    for j, name in enumerate(feature_names):
        if "hist" in feature_stats.get(name, {}):
            groups.setdefault(len(feature_stats[name]["hist"][0]), []).append(j)
    return list(groups.values())


def prepare_reference_bins(
    feature_names: list[str], feature_stats: dict[str, Any]
) -> list[tuple[str, ...]]:
    """Derive the padded edges, probabilities and bin plans of a reference now, exactly
    as histogram_drift will ask for them (the same groups, the same cache keys); returns
    the groups' feature names, for other measures prepared on the same groups."""
    groups = [
        tuple(feature_names[j] for j in g) for g in histogram_groups(feature_names, feature_stats)
    ]
    for names in groups:
        _reference_bins(feature_stats, names)
    return groups


def histogram_drift(
    matrix: np.ndarray, feature_names: list[str], feature_stats: dict[str, Any]
) -> HistogramDrift | None:
    """Drift of every feature that has a reference histogram and at least one value,
    binned per group of histogram_groups."""
    found: list[tuple[int, np.ndarray, np.ndarray, float, float, float]] = []
    for group in histogram_groups(feature_names, feature_stats):
        names = [feature_names[j] for j in group]
        edges, u, plan = _reference_bins(feature_stats, tuple(names))
        block = matrix if group == list(range(matrix.shape[1])) else matrix[:, group]
        counts = binned_counts(block, edges, plan)
        t = probabilities(counts.astype(np.float64))
        tvd, hel, kld = total_variance_distance(t, u), hellinger_distance(t, u), kl_divergence(t, u)
        for k, j in enumerate(group):
            if counts[k].sum() > 0:
                found.append((j, counts[k], edges[k], tvd[k], hel[k], kld[k]))
    if not found:
        return None
    found.sort(key=lambda f: f[0])
    return HistogramDrift(
        features=[feature_names[f[0]] for f in found],
        tvd=np.array([f[3] for f in found]),
        hellinger=np.array([f[4] for f in found]),
        kld=np.array([f[5] for f in found]),
        counts=[f[1] for f in found],
        edges=[f[2] for f in found],
    )


_LAST_WINDOW: list[tuple[np.ndarray, dict[str, Any], tuple[str, ...], HistogramDrift | None]] = []


def window_histogram_drift(
    matrix: np.ndarray, feature_names: list[str], feature_stats: dict[str, Any]
) -> HistogramDrift | None:
    """histogram_drift of one window, binned once for the applications that need it (the
    histogram application and drift-metrics run one after the other on the same window).
    The last call is kept and matched by the identity of its inputs, which it holds, so a
    new window can never be taken for it."""
    names = tuple(feature_names)
    if _LAST_WINDOW:
        last_matrix, last_stats, last_names, result = _LAST_WINDOW[0]
        if last_matrix is matrix and last_stats is feature_stats and last_names == names:
            return result
    result = histogram_drift(matrix, feature_names, feature_stats)
    _LAST_WINDOW[:] = [(matrix, feature_stats, names, result)]
    return result


class HistogramDataDriftApplication:
    NAME = NAME

    def prepare(self, endpoint: dict[str, Any]) -> None:
        """What this application derives from the endpoint's reference, built before its
        first window (see ApplicationActor.prepare)."""
        context = endpoint_context(NAME, endpoint)
        prepare_reference_bins(context.feature_names, context.reference_stats)

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        potential = float(context.settings.get("potential_threshold", 0.5))
        detected = float(context.settings.get("detected_threshold", 0.7))
        drift = window_histogram_drift(
            context.features, context.feature_names, context.reference_stats
        )
        if drift is None:
            return []
        value = drift.general_drift
        calibrated = context.settings.get("calibration") == "bootstrap" or bool(
            context.endpoint.get("calibrate")
        )
        if calibrated:
            reference = [
                reference_probabilities(context.feature_stats, [name])[0] for name in drift.features
            ]
            n = int(np.min([c.sum() for c in drift.counts]))
            potential, detected = calibrated_thresholds(
                reference, max(n, 1), context.endpoint_uid, potential, detected
            )
        status = status_for(value, potential, detected)
        if len(context.batch) < int(context.settings.get("min_sample_size", 0)):
            status = ResultStatus.irrelevant  # too few rows to call it either way
        per_feature = drift.per_feature()
        context.endpoint_updates.update(
            {
                "current_stats": current_feature_stats(
                    context.features[:, [context.feature_names.index(n) for n in drift.features]],
                    drift.features,
                    drift.edges,
                    drift.counts,
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
                    "thresholds": {
                        "potential": potential,
                        "detected": detected,
                        "calibrated": calibrated,
                    },
                },
            ),
        ]
