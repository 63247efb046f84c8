"""Batch evaluation (MLRun's evaluate/record_results): run the same applications over an
offline dataset, window by window, with the same code as the live path, and write the
results where the daemon writes them (or return them)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from modelmon_daemon.analytics.stats import reference_feature_stats
from modelmon_daemon.applications import build_applications
from modelmon_daemon.applications.runner import run_application
from modelmon_daemon.config import Settings, application_settings
from modelmon_daemon.core.records import ColumnBatch, EndpointSpec, ResultRecord, WindowMeta
from modelmon_daemon.core.uris import is_uri
from modelmon_daemon.storage import table_files
from modelmon_daemon.storage.parquet_store import ParquetStore


class EvaluateError(ValueError):
    pass


def read_table(path: str) -> pa.Table:
    try:
        return table_files.read_table(path)
    except table_files.TableFileError as exc:
        raise EvaluateError(str(exc)) from None


def _numeric(table: pa.Table, name: str, path: str) -> np.ndarray:
    try:
        return table_files.float_column(table, name, path)
    except table_files.TableFileError as exc:
        raise EvaluateError(str(exc)) from None


def _times(table: pa.Table, column: str, path: str) -> np.ndarray:
    if column not in table.column_names:
        raise EvaluateError(f"{path}: no time column {column!r}")
    col = table.column(column)
    if pa.types.is_timestamp(col.type):
        nanos = pc.cast(col.cast(pa.timestamp("ns", tz="UTC")), pa.int64())
        return np.asarray(nanos.to_numpy(zero_copy_only=False), dtype=np.float64) / 1e9
    if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
        from modelmon_daemon.core.times import parse_time

        try:
            return np.array([parse_time(v) for v in col.to_pylist()], dtype=np.float64)
        except ValueError as exc:
            raise EvaluateError(f"{path}: column {column!r}: {exc}") from None
    return _numeric(table, column, path)


@dataclass
class Evaluation:
    uid: str
    spec: EndpointSpec
    windows: list[WindowMeta]
    results: list[ResultRecord]
    failures: list[str]


def evaluate(
    data_path: str,
    reference_path: str,
    settings: Settings,
    base_period: float | None = None,
    time_column: str | None = None,
    features: list[str] | None = None,
    uid: str | None = None,
    project: str = "evaluate",
    progress: Callable[[int, int], None] | None = None,
) -> Evaluation:
    data = read_table(data_path)
    reference = read_table(reference_path)
    if features is None:
        features = [
            c
            for c in reference.column_names
            if c != time_column
            and (
                pa.types.is_integer(reference.column(c).type)
                or pa.types.is_floating(reference.column(c).type)
            )
        ]
    if not features:
        raise EvaluateError(f"{reference_path}: no numeric feature columns")
    for name in features:
        if name not in data.column_names:
            raise EvaluateError(f"{data_path}: no column {name!r} (a feature of the reference)")
        if name not in reference.column_names:
            raise EvaluateError(f"{reference_path}: no column {name!r}")
    ref_matrix = np.column_stack([_numeric(reference, n, reference_path) for n in features])
    uid = uid or f"evaluate-{Path(data_path).stem}"
    spec = EndpointSpec(
        uid=uid,
        project=project,
        name=Path(data_path).stem,
        feature_names=features,
        label_names=[],
        feature_stats=reference_feature_stats(ref_matrix, features),
        created=time.time(),
    )
    matrix = np.column_stack([_numeric(data, n, data_path) for n in features])
    n = matrix.shape[0]
    if time_column:
        period = base_period or settings.windows.base_period
        ts = _times(data, time_column, data_path)
        starts = np.floor(ts / period) * period
    else:  # no time: the dataset is one window
        period = 1.0
        ts = np.full(n, math.floor(time.time()))
        starts = ts.copy()
    apps = build_applications(settings.applications.builtin, settings.applications.user)
    app_settings = application_settings(settings)
    endpoint = spec.to_dict()
    windows, results, failures = [], [], []
    unique = np.unique(starts)
    for k, start in enumerate(unique):
        mask = starts == start
        rows = int(mask.sum())
        batch = ColumnBatch(
            timestamps=ts[mask],
            features=matrix[mask],
            outputs=[],
            request_ids=np.array([str(i) for i in np.nonzero(mask)[0]], dtype=object),
            latency_us=np.full(rows, np.nan),
            errors=np.full(rows, None, dtype=object),
        )
        meta = WindowMeta(uid, float(start), float(start + period), [], rows=rows)
        windows.append(meta)
        for name, app in apps.items():
            out = run_application(name, app, endpoint, meta, batch, app_settings)
            results.extend(out.results)
            if out.failure:
                failures.append(f"{name} [{meta.start:.0f}]: {out.failure}")
        if progress:
            progress(k + 1, len(unique))
    return Evaluation(uid, spec, windows, results, failures)


def write_results(evaluation: Evaluation, data_dir: str) -> list[str]:
    """Results Parquet files exactly where the daemon writes them. `data_dir`: a folder,
    or a URI pyarrow opens (as storage.parquet_uri)."""
    store = ParquetStore(
        data_dir if is_uri(data_dir) else str(Path(data_dir).expanduser().resolve())
    )
    project = evaluation.spec.project
    windows = [
        (meta, [r for r in evaluation.results if r.start == meta.start], project)
        for meta in evaluation.windows
    ]
    files = store.results_files(windows)
    for path, table in files:
        store.write_table(path, table)
    return [path for path, _ in files]


def as_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    from modelmon_daemon.core.times import iso

    rows = []
    for r in evaluation.results:
        d = r.to_dict()
        d["start"], d["end"] = iso(r.start), iso(r.end)
        rows.append(d)
    return rows
