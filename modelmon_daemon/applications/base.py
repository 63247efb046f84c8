"""The application interface: `do_tracking(context)` returns results and metrics.

Built-in and user applications share it. A user application is any class with a
`do_tracking(context)` method, loaded by import path (`package.module:Class`).
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Protocol

import numpy as np

from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.identity import check_result_name
from modelmon_daemon.core.records import ColumnBatch


@dataclass
class Result:
    """A value with a kind and a status (MLRun's ModelMonitoringApplicationResult)."""

    name: str
    value: float
    kind: ResultKind
    status: ResultStatus
    extra_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class Metric:
    """A plain value (MLRun's ModelMonitoringApplicationMetric); `extra_data` is stored
    with it (e.g. an estimate's band)."""

    name: str
    value: float
    extra_data: dict[str, Any] = field(default_factory=dict)


@dataclass
class MonitoringContext:
    """What an application sees of one closed window of one endpoint."""

    application_name: str
    endpoint: dict[str, Any]
    start: float
    end: float
    batch: ColumnBatch
    settings: dict[str, Any] = field(default_factory=dict)
    endpoint_updates: dict[str, Any] = field(default_factory=dict)

    @property
    def endpoint_uid(self) -> str:
        return str(self.endpoint["uid"])

    @property
    def project(self) -> str:
        return str(self.endpoint.get("project", ""))

    @property
    def feature_names(self) -> list[str]:
        return list(self.endpoint.get("feature_names", []))

    @property
    def feature_stats(self) -> dict[str, Any]:
        """Reference stats, MLRun format, histograms padded."""
        return dict(self.endpoint.get("feature_stats") or {})

    @property
    def features(self) -> np.ndarray:
        """The window's inputs, rows x features, NaN = missing."""
        return self.batch.features

    @cached_property
    def sample_df(self) -> Any:
        """The window as a pandas DataFrame (features, outputs, timestamp, request id)."""
        import pandas as pd

        data: dict[str, Any] = {
            n: self.batch.features[:, j] for j, n in enumerate(self.feature_names)
        }
        for name, col in zip(
            self.endpoint.get("label_names") or [], self.batch.outputs, strict=False
        ):
            data[name] = col
        data["timestamp"] = pd.to_datetime(self.batch.timestamps, unit="s", utc=True)
        data["request_id"] = self.batch.request_ids
        return pd.DataFrame(data)


class MonitoringApplication(Protocol):
    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]: ...


def application_name(app: Any) -> str:
    name = getattr(app, "NAME", None) or getattr(app, "name", None)
    if isinstance(name, str) and name:
        return name
    cls = app if isinstance(app, type) else type(app)
    return re.sub(r"(?<!^)(?=[A-Z])", "-", cls.__name__).lower()


def load_user_application(path: str) -> Any:
    """Instantiate `package.module:Class` (or `package.module.Class`)."""
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    module = importlib.import_module(module_name)
    cls = getattr(module, attr)
    app = cls() if isinstance(cls, type) else cls
    if not callable(getattr(app, "do_tracking", None)):
        raise TypeError(f"{path} has no do_tracking(context) method")
    return app


def validate_outputs(outputs: Any) -> list[Result | Metric]:
    if outputs is None:
        return []
    if isinstance(outputs, Result | Metric):
        outputs = [outputs]
    checked: list[Result | Metric] = []
    for item in outputs:
        if not isinstance(item, Result | Metric):
            raise TypeError(f"do_tracking returned {type(item).__name__}, not a Result or Metric")
        check_result_name(item.name)
        checked.append(item)
    return checked
