import math

import numpy as np
import pytest

from modelmon_daemon.analytics.performance import (
    classification_metrics,
    drop_status,
    regression_metrics,
)
from modelmon_daemon.core.enums import ResultStatus


def sk_like_binary(y, p):
    tp = sum(a == 1 and b == 1 for a, b in zip(y, p, strict=True))
    fp = sum(a == 0 and b == 1 for a, b in zip(y, p, strict=True))
    fn = sum(a == 1 and b == 0 for a, b in zip(y, p, strict=True))
    precision, recall = tp / (tp + fp), tp / (tp + fn)
    return precision, recall, 2 * precision * recall / (precision + recall)


def test_binary_classification():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 500).tolist()
    p = [v if rng.random() < 0.8 else 1 - v for v in y]
    m = classification_metrics(y, p)
    precision, recall, f1 = sk_like_binary(y, p)
    assert m["accuracy"] == pytest.approx(np.mean(np.array(y) == np.array(p)))
    assert (m["precision"], m["recall"], m["f1"]) == pytest.approx((precision, recall, f1))


def test_multiclass_macro_with_strings_and_numbers_alike():
    y = ["a", "b", "c", "a", "b", "c"]
    p = ["a", "b", "b", "a", "c", "c"]
    m = classification_metrics(y, p)
    # per class precision a 1, b 1/2, c 1/2; recall a 1, b 1/2, c 1/2
    assert m["precision"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert m["f1"] == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert classification_metrics([1, 0, 1.0], [True, False, 1])["accuracy"] == 1.0


def test_regression():
    y, p = [1.0, 2.0, 3.0, 4.0], [1.5, 2.0, 2.0, 5.0]
    m = regression_metrics(y, p)
    assert m["mae"] == pytest.approx(0.625)
    assert m["rmse"] == pytest.approx(math.sqrt((0.25 + 0 + 1 + 1) / 4))
    assert m["r2"] == pytest.approx(1 - 2.25 / 5.0)


def test_drop_status_both_directions():
    assert drop_status("accuracy", 0.80, 0.90, 0.05, 0.1)[0] is ResultStatus.detected
    assert drop_status("accuracy", 0.85, 0.90, 0.05, 0.1)[0] is ResultStatus.potential_detection
    assert drop_status("accuracy", 0.95, 0.90, 0.05, 0.1)[0] is ResultStatus.no_detection
    assert drop_status("rmse", 1.2, 1.0, 0.05, 0.1)[0] is ResultStatus.detected
    assert drop_status("rmse", 1.0, None, 0.05, 0.1) == (ResultStatus.no_detection, None)
