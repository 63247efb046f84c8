"""Calibrated thresholds: stationary windows are rarely `detected`, shifts still are."""

import numpy as np

from modelmon_daemon.analytics.calibration import calibrated_thresholds, null_general_drift
from modelmon_daemon.analytics.stats import reference_feature_stats, reference_probabilities
from modelmon_daemon.applications.base import MonitoringContext, Result
from modelmon_daemon.applications.histogram_data_drift import HistogramDataDriftApplication
from modelmon_daemon.core.enums import ResultStatus
from tests.helpers import make_batch

NAMES = ["a", "b", "c", "d", "e"]


def statuses(stats, windows, calibration):
    app = HistogramDataDriftApplication()
    out = []
    for w in windows:
        ctx = MonitoringContext(
            "histogram-data-drift",
            {"uid": "cal", "feature_names": NAMES, "feature_stats": stats},
            0,
            60,
            make_batch(np.zeros(len(w)), w),
            {"calibration": calibration},
        )
        result = next(o for o in app.do_tracking(ctx) if isinstance(o, Result))
        out.append(result.status)
    return out


def test_stationary_small_windows_are_flagged_rarely_once_calibrated():
    rng = np.random.default_rng(1234)
    stats = reference_feature_stats(rng.normal(size=(20_000, 5)), NAMES)
    windows = [rng.normal(size=(5, 5)) for _ in range(300)]
    raw = statuses(stats, windows, "off")
    calibrated = statuses(stats, windows, "bootstrap")
    flagged = {ResultStatus.detected, ResultStatus.potential_detection}
    # MLRun's fixed 0.5 / 0.7 flag nearly every stationary window of 5 rows
    assert sum(s in flagged for s in raw) > 250
    assert sum(s is ResultStatus.detected for s in calibrated) <= 3  # <= 1% of 300
    assert sum(s in flagged for s in calibrated) <= 18  # about 5% potential


def test_a_shift_is_detected_within_two_calibrated_windows():
    rng = np.random.default_rng(99)
    stats = reference_feature_stats(rng.normal(size=(20_000, 5)), NAMES)
    stream = [rng.normal(size=(12, 5)) for _ in range(5)] + [
        rng.normal(3.0, 1, size=(12, 5)) for _ in range(5)
    ]
    got = statuses(stats, stream, "bootstrap")
    first = next(i for i, s in enumerate(got) if s is ResultStatus.detected)
    assert first in (5, 6)


def test_bootstrap_is_seeded_per_endpoint_and_never_below_configured():
    rng = np.random.default_rng(0)
    stats = reference_feature_stats(rng.normal(size=(5000, 2)), ["x", "y"])
    ref = [reference_probabilities(stats, [n])[0] for n in ("x", "y")]
    assert calibrated_thresholds(ref, 50, "ep", 0.5, 0.7) == calibrated_thresholds(
        ref, 50, "ep", 0.5, 0.7
    )
    assert calibrated_thresholds(ref, 100_000, "ep", 0.5, 0.7) == (0.5, 0.7)  # big windows
    null = null_general_drift(ref, 20, seed=1, windows=1000)
    assert null.shape == (1000,) and 0 < null.mean() < 1
