"""Seeded synthetic streams: each detector finds the change at an exact index, and stays
silent on stationary data."""

import numpy as np
import pytest

from modelmon_daemon.analytics.drift import ADWIN, DDM, PageHinkley


def first_alarm(detector, stream):
    for i, x in enumerate(stream):
        if detector.update(float(x)).drift_detected:
            return i
    return None


def mean_shift(seed=42, before=1000, after=1000, shift=1.0):
    rng = np.random.default_rng(seed)
    return np.concatenate([rng.normal(0, 1, before), rng.normal(shift, 1, after)])


def test_page_hinkley_finds_a_one_sd_shift_at_index_1052():
    assert first_alarm(PageHinkley(), mean_shift()) == 1052


def test_page_hinkley_down_mode_and_restart():
    stream = mean_shift(shift=-1.0)
    detector = PageHinkley(mode="down")
    assert first_alarm(detector, stream) == 1057
    assert PageHinkley(mode="up").update(0.0).drift_detected is False
    assert not detector.update(0.0).drift_detected  # restarted after the alarm
    assert detector.n == 1


def test_adwin_finds_the_shift_at_index_1055_and_shrinks_its_window():
    detector = ADWIN()
    assert first_alarm(detector, mean_shift()) == 1055
    assert detector.width < 1056 - 500  # most of the pre-change part was dropped
    assert detector.estimation > 0.3  # mean of the window moved toward the new mean (1.0)


def test_adwin_window_statistics_stay_exact():
    rng = np.random.default_rng(3)
    values = rng.normal(5, 2, 777)
    detector = ADWIN(delta=1e-12)
    for v in values:
        detector.update(float(v))
    assert detector.width == 777
    assert detector.estimation == pytest.approx(values.mean())
    assert detector.variance == pytest.approx(((values - values.mean()) ** 2).sum())


def test_ddm_finds_an_error_rate_rise_at_index_3189():
    rng = np.random.default_rng(7)
    errors = np.concatenate([rng.random(3000) < 0.1, rng.random(2000) < 0.3]).astype(float)
    assert first_alarm(DDM(), errors) == 3189


def test_ddm_refuses_values_outside_0_1():
    with pytest.raises(ValueError):
        DDM().update(2.0)


@pytest.mark.parametrize("make", [PageHinkley, ADWIN])
def test_no_alarm_on_50k_stationary_standardized_events(make):
    rng = np.random.default_rng(11)
    detector = make()
    assert sum(detector.update(float(x)).drift_detected for x in rng.normal(0, 1, 50_000)) == 0


def test_ddm_no_alarm_on_50k_stationary_errors():
    rng = np.random.default_rng(12)
    detector = DDM()
    errors = (rng.random(50_000) < 0.2).astype(float)
    assert sum(detector.update(float(e)).drift_detected for e in errors) == 0
