"""More drift measures from the same binned window as the histogram application: PSI,
Jensen-Shannon (base 2), Wasserstein normalized by the reference standard deviation and
the Kolmogorov-Smirnov statistic, per feature, plus the share of drifted features as a
data_drift result. Below `drift.min_sample_size` rows the status is `irrelevant`."""

from __future__ import annotations

from typing import Any

import numpy as np

from modelmon_daemon.analytics.categorical import categorical_drift, category_counts
from modelmon_daemon.analytics.distances import (
    PSI_EPSILON,
    bin_positions,
    jensen_shannon_divergence,
    kolmogorov_smirnov_binned,
    population_stability_index,
    probabilities,
    wasserstein_binned,
)
from modelmon_daemon.analytics.stats import pad_hist
from modelmon_daemon.applications.base import Metric, MonitoringContext, Result, endpoint_context
from modelmon_daemon.applications.histogram_data_drift import (
    prepare_reference_bins,
    status_for,
    window_histogram_drift,
)
from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
from modelmon_daemon.core.enums import ResultKind, ResultStatus

NAME = "drift-metrics"


def _reference_side(
    feature_stats: dict[str, Any], names: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(reference probabilities, bin positions, Wasserstein scale) of features, once per
    reference (see reference_cache)."""

    def build() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        hists = [pad_hist(feature_stats[n]["hist"]) for n in names]
        u = probabilities(np.array([h[0] for h in hists], dtype=np.float64))
        positions = bin_positions(np.array([h[1] for h in hists], dtype=np.float64))
        std = np.array([float(feature_stats[n].get("std") or 0.0) for n in names])
        return u, positions, np.where(std > 0, std, 1.0)

    return REFERENCE_CACHE.get(feature_stats, ("drift-metrics", names), build)


def drift_measures(
    matrix: np.ndarray, feature_names: list[str], feature_stats: dict[str, Any]
) -> dict[str, dict[str, float]] | None:
    """feature -> {psi, js, wasserstein, ks}; features binned together per bin count."""
    binned = window_histogram_drift(matrix, feature_names, feature_stats)
    if binned is None:
        return None
    out: dict[str, dict[str, float]] = {}
    groups: dict[int, list[int]] = {}
    for k, counts in enumerate(binned.counts):
        groups.setdefault(len(counts), []).append(k)
    for members in groups.values():
        names = [binned.features[k] for k in members]
        counts = np.array([binned.counts[k] for k in members], dtype=np.float64)
        u, positions, scale = _reference_side(feature_stats, tuple(names))
        t = probabilities(counts)
        wasserstein = wasserstein_binned(t, u, positions)
        values = {
            "psi": population_stability_index(t, u),
            "js": jensen_shannon_divergence(t, u),
            "wasserstein": wasserstein / scale,
            "ks": kolmogorov_smirnov_binned(t, u),
        }
        for j, name in enumerate(names):
            out[name] = {key: float(v[j]) for key, v in values.items()}
    return {n: out[n] for n in binned.features}


def categorical_measures(context: MonitoringContext) -> dict[str, dict[str, Any]]:
    """feature -> category distances, for categorical features with reference counts."""
    out = {}
    for j, values in context.batch.categorical.items():
        name = context.feature_names[j]
        reference = context.feature_stats.get(name, {})
        if reference.get("kind") != "categorical":
            continue
        found = categorical_drift(category_counts(values.tolist()), reference["counts"])
        if "drift" in found:
            found.pop("categories")
            out[name] = found
    return out


def share_status(share: float, potential: float, detected: float) -> ResultStatus:
    if share >= detected:
        return ResultStatus.detected
    if share >= potential:
        return ResultStatus.potential_detection
    return ResultStatus.no_detection


class DriftMetricsApplication:
    NAME = NAME

    def prepare(self, endpoint: dict[str, Any]) -> None:
        """The reference's bins and its side of the measures, built before the endpoint's
        first window (a window with every feature present asks for exactly these)."""
        context = endpoint_context(NAME, endpoint)
        names, stats = context.feature_names, context.reference_stats
        for group in prepare_reference_bins(names, stats):
            _reference_side(stats, group)

    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]:
        s = context.settings
        measures = drift_measures(context.features, context.feature_names, context.reference_stats)
        categories = categorical_measures(context)
        if measures is None and not categories:
            return []
        measures = measures or {}
        psi_threshold = float(s.get("psi_threshold", 0.2))
        potential = float(s.get("potential_threshold", 0.5))
        drifted = sorted(
            [n for n, m in measures.items() if m["psi"] >= psi_threshold]
            + [n for n, m in categories.items() if m["drift"] >= potential]
        )
        share = len(drifted) / (len(measures) + len(categories))
        rows = len(context.batch)
        status = share_status(
            share, float(s.get("share_potential", 0.25)), float(s.get("share_detected", 0.5))
        )
        if rows < int(s.get("min_sample_size", 0)):
            status = ResultStatus.irrelevant
        out: list[Result | Metric] = [
            Metric(f"{key}_mean", float(np.mean([m[key] for m in measures.values()])))
            for key in ("psi", "js", "wasserstein", "ks")
            if measures
        ]
        if categories:
            value = float(np.mean([m["drift"] for m in categories.values()]))
            out.append(
                Result(
                    "categorical_drift",
                    value,
                    ResultKind.data_drift,
                    ResultStatus.irrelevant
                    if rows < int(s.get("min_sample_size", 0))
                    else status_for(value, potential, float(s.get("detected_threshold", 0.7))),
                    {"features": categories},
                )
            )
        out.append(
            Result(
                "drifted_features_share",
                share,
                ResultKind.data_drift,
                status,
                {
                    "features": {**measures, **categories},
                    "drifted": drifted,
                    "psi_threshold": psi_threshold,
                    "psi_epsilon": PSI_EPSILON,
                    "sample_size": rows,
                },
            )
        )
        return out
