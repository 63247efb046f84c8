"""Model performance once ground truth arrives: a window's predictions joined with their
labels (the label join, whose owner is the writer, gives the pairs) scored with the
model type's metrics (accuracy, precision, recall, f1; or mae, rmse, r2), and the main
metric's drop against the reference performance given at registration.

A stateful application: it runs where its input, the label join, lives, on the pairs
joined since the endpoint's last scored window (late labels of analyzed windows
included), not on the window's rows alone."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from modelmon_daemon.analytics.performance import (
    classification_keys,
    classification_metrics,
    drop_status,
    regression_metrics,
)
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import ResultRecord, WindowMeta

NAME = "model-performance"
MAIN_METRIC = {"classification": "accuracy", "regression": "rmse"}


@dataclass
class LabeledWindow:
    """Predictions joined with their ground truth, oldest first, for one window."""

    meta: WindowMeta
    model_type: str  # "classification" | "regression"
    labels: list[Any]
    predictions: list[Any]
    reference: dict[str, float]  # the endpoint's reference_performance

    def __len__(self) -> int:
        return len(self.labels)

    def errors(self) -> list[float]:
        """Per pair: 1.0 for a wrong class, 0.0 for a right one; or the absolute error."""
        if self.model_type == "classification":
            pairs = zip(
                classification_keys(self.labels),
                classification_keys(self.predictions),
                strict=True,
            )
            return [0.0 if a == b else 1.0 for a, b in pairs]
        return [
            abs(float(a) - float(b)) for a, b in zip(self.labels, self.predictions, strict=True)
        ]


class ModelPerformanceApplication:
    NAME = NAME

    def __init__(self, drop_potential: float, drop_detected: float, min_sample_size: int) -> None:
        self.drop_potential = drop_potential
        self.drop_detected = drop_detected
        self.min_sample_size = min_sample_size

    def score(self, window: LabeledWindow) -> list[ResultRecord]:
        """One metric per measure, and the main one as a result whose status says how far
        it dropped from the reference (irrelevant under min_sample_size pairs)."""
        if window.model_type == "classification":
            values = classification_metrics(window.labels, window.predictions)
        else:
            values = regression_metrics(
                [float(v) for v in window.labels], [float(v) for v in window.predictions]
            )
        main = MAIN_METRIC[window.model_type]
        status, drop = drop_status(
            main,
            values[main],
            window.reference.get(main),
            self.drop_potential,
            self.drop_detected,
        )
        n = len(window)
        if n < self.min_sample_size:
            status = ResultStatus.irrelevant
        meta = window.meta
        records = [
            ResultRecord(NAME, name, "metric", value, meta.start, meta.end, sample_size=n)
            for name, value in values.items()
            if name != main
        ]
        records.append(
            ResultRecord(
                NAME,
                main,
                "result",
                values[main],
                meta.start,
                meta.end,
                ResultKind.model_performance,
                status,
                {
                    "reference": window.reference.get(main),
                    "relative_drop": drop,
                    "pairs": n,
                    **{k: v for k, v in values.items() if k != main},
                },
                n,
            )
        )
        return records
