"""Our detectors against River's on the same seeded streams: the same detection indices,
every one of them (River is the reference implementation; it runs here as a test oracle)."""

import numpy as np
import pytest
from river import drift as river_drift

from modelmon_daemon.analytics.drift import ADWIN, DDM, PageHinkley


def alarms(detector, stream):
    found = []
    for i, x in enumerate(stream):
        detector.update(float(x))  # River's update returns None, ours self
        if detector.drift_detected:
            found.append(i)
    return found


def error_stream(seed, rates, length=2000):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.random(length) < r for r in rates]).astype(float)


def mean_stream(seed, means, length=1000):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(m, 1, length) for m in means])


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize(("warm", "warning", "drift"), [(1000, 2.0, 4.0), (30, 2.0, 3.0)])
def test_ddm_matches_river(seed, warm, warning, drift):
    stream = error_stream(seed, [0.1, 0.3, 0.05, 0.4])
    ours = alarms(DDM(warm, warning, drift), stream)
    theirs = alarms(river_drift.binary.DDM(warm, warning, drift), stream)
    assert ours == theirs
    assert ours  # the rises are found


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("alpha", [1.0, 1 - 0.0001])
@pytest.mark.parametrize("mode", ["up", "down", "both"])
def test_page_hinkley_matches_river(seed, alpha, mode):
    stream = mean_stream(seed, [0, 1, -1, 0.5])
    kw = {"min_instances": 30, "delta": 0.1, "threshold": 50, "mode": mode, "alpha": alpha}
    ours = alarms(PageHinkley(**kw), stream)
    theirs = alarms(river_drift.PageHinkley(**kw), stream)
    assert ours == theirs and ours


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("delta", [0.002, 0.0002])
def test_adwin_matches_river(seed, delta):
    stream = mean_stream(seed, [0, 1, -1, 0.5])
    ours = alarms(ADWIN(delta=delta), stream)
    theirs = alarms(river_drift.ADWIN(delta=delta), stream)
    assert ours == theirs and ours


@pytest.mark.parametrize("make", [DDM, lambda: river_drift.binary.DDM()])
def test_a_model_that_is_always_right_never_alarms(make):
    detector = make()
    assert alarms(detector, np.zeros(20_000)) == []


def test_a_model_that_is_always_wrong_never_alarms():
    assert alarms(DDM(), np.ones(20_000)) == []
    assert alarms(ADWIN(), np.ones(20_000)) == []
