"""Streaming concept-drift detectors, one per file, River's interface: `update(x) -> self`,
then `drift_detected` (and `warning_detected` where the method has one). Pure Python
state, no I/O; defaults chosen for standardized inputs and a low false-alarm rate."""

from modelmon_daemon.analytics.drift.adwin import ADWIN
from modelmon_daemon.analytics.drift.ddm import DDM
from modelmon_daemon.analytics.drift.page_hinkley import PageHinkley

__all__ = ["ADWIN", "DDM", "PageHinkley"]
