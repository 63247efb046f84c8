"""The application interface: `do_tracking(context)` returns results and metrics.

Built-in and user applications share it. A user application is any class with a
`do_tracking(context)` method, loaded by import path (`package.module:Class`).
"""

from __future__ import annotations

import importlib
import logging
import re
from dataclasses import dataclass, field
from functools import cached_property
from types import SimpleNamespace
from typing import Any, Protocol

import numpy as np

from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.identity import check_result_name
from modelmon_daemon.core.records import ColumnBatch, empty_batch


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


_NO_STATS: dict[str, Any] = {}


class KeywordLogger:
    """A logger that takes MLRun's style, `logger.info("message", key=value, ...)`."""

    def __init__(self, name: str) -> None:
        self._logger = logging.getLogger(name)

    def _log(self, level: int, message: str, **fields: Any) -> None:
        if self._logger.isEnabledFor(level):
            extra = " ".join(f"{k}={v!r}" for k, v in fields.items())
            self._logger.log(level, f"{message} {extra}" if extra else message)

    def debug(self, message: str, **fields: Any) -> None:
        self._log(logging.DEBUG, message, **fields)

    def info(self, message: str, **fields: Any) -> None:
        self._log(logging.INFO, message, **fields)

    def warning(self, message: str, **fields: Any) -> None:
        self._log(logging.WARNING, message, **fields)

    warn = warning

    def error(self, message: str, **fields: Any) -> None:
        self._log(logging.ERROR, message, **fields)


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
        """Reference stats, MLRun format, histograms padded (a copy: yours to change)."""
        return dict(self.reference_stats)

    @property
    def reference_stats(self) -> dict[str, Any]:
        """The endpoint's reference stats themselves (shared by every application of the
        window: read, never change)."""
        return self.endpoint.get("feature_stats") or _NO_STATS

    @property
    def features(self) -> np.ndarray:
        """The window's inputs, rows x features, NaN = missing."""
        return self.batch.features

    @cached_property
    def sample_df(self) -> Any:
        """The window as a pandas DataFrame (features, outputs, timestamp, request id);
        categorical features keep their values."""
        import pandas as pd

        data: dict[str, Any] = {}
        for j, name in enumerate(self.feature_names):
            column = self.batch.categorical.get(j)
            data[name] = column if column is not None else self.batch.features[:, j]
        for name, col in zip(
            self.endpoint.get("label_names") or [], self.batch.outputs, strict=False
        ):
            data[name] = col
        data["timestamp"] = pd.to_datetime(self.batch.timestamps, unit="s", utc=True)
        data["request_id"] = np.asarray(self.batch.request_ids)
        return pd.DataFrame(data)

    # -- what MLRun's MonitoringApplicationContext offers, by the same names ------------

    @property
    def endpoint_id(self) -> str:
        return self.endpoint_uid

    @property
    def endpoint_name(self) -> str:
        return str(self.endpoint.get("name", ""))

    @property
    def start_infer_time(self) -> Any:
        import pandas as pd

        return pd.Timestamp(self.start, unit="s", tz="UTC")

    @property
    def end_infer_time(self) -> Any:
        import pandas as pd

        return pd.Timestamp(self.end, unit="s", tz="UTC")

    @cached_property
    def sample_df_stats(self) -> dict[str, Any]:
        """The window's stats in MLRun's format, each numeric feature's histogram on its
        reference edges (what MLRun computes with calculate_inputs_statistics)."""
        from modelmon_daemon.analytics.stats import (
            binned_counts,
            current_feature_stats,
            padded_edges_matrix,
        )

        reference = self.feature_stats
        out: dict[str, Any] = {}
        for j, name in enumerate(self.feature_names):
            if j in self.batch.categorical or "hist" not in reference.get(name, {}):
                continue
            column = self.batch.features[:, [j]]
            edges = padded_edges_matrix(reference, [name])
            counts = binned_counts(column, edges)
            out.update(current_feature_stats(column, [name], list(edges), list(counts)))
        return out

    @cached_property
    def model_endpoint(self) -> Any:
        """The endpoint as MLRun's ModelEndpoint shows it: metadata, spec, status."""
        e = self.endpoint
        return SimpleNamespace(
            metadata=SimpleNamespace(
                uid=self.endpoint_uid, name=self.endpoint_name, project=self.project
            ),
            spec=SimpleNamespace(
                feature_names=self.feature_names,
                label_names=list(e.get("label_names") or []),
                model_class=e.get("model_class", ""),
                function_uri=e.get("function_uri", ""),
                model_name=e.get("model", ""),
            ),
            status=SimpleNamespace(feature_stats=self.feature_stats),
        )

    @property
    def logger(self) -> KeywordLogger:
        return KeywordLogger(f"modelmon_daemon.applications.{self.application_name}")


class MonitoringApplication(Protocol):
    def do_tracking(self, context: MonitoringContext) -> list[Result | Metric]: ...


def endpoint_context(application_name: str, endpoint: dict[str, Any]) -> MonitoringContext:
    """An endpoint's context without a window: what an application's optional
    `prepare(endpoint)` reads (feature names, reference stats) by the same properties its
    do_tracking reads them."""
    n_features = len(endpoint.get("feature_names") or [])
    return MonitoringContext(application_name, endpoint, 0.0, 0.0, empty_batch(n_features, 0))


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
    """Results and metrics: ours, or any object with MLRun's attributes (`name`, `value`,
    and for a result `kind`, `status`, `extra_data`), MLRun's own classes included."""
    if outputs is None:
        return []
    if isinstance(outputs, Result | Metric) or hasattr(outputs, "value"):
        outputs = [outputs]  # one result, as MLRun allows
    checked: list[Result | Metric] = []
    for item in outputs:
        item = _as_output(item)
        check_result_name(item.name)
        checked.append(item)
    return checked


def _enum_int(value: Any) -> int:
    return int(getattr(value, "value", value))


def _as_output(item: Any) -> Result | Metric:
    if isinstance(item, Result | Metric):
        return item
    if not (hasattr(item, "name") and hasattr(item, "value")):
        raise TypeError(f"do_tracking returned {type(item).__name__}, not a Result or Metric")
    name, value = str(item.name), float(item.value)
    extra = dict(getattr(item, "extra_data", None) or {})
    if hasattr(item, "kind") and hasattr(item, "status"):
        try:
            kind, status = ResultKind(_enum_int(item.kind)), ResultStatus(_enum_int(item.status))
        except ValueError as exc:
            raise TypeError(f"result {name!r}: {exc}") from None
        return Result(name, value, kind, status, extra)
    return Metric(name, value, extra)
