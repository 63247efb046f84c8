"""Reference data given at registration: rows, or a Parquet/CSV file, -> a float matrix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from modelmon_daemon.errors import ApiError


def reference_matrix(reference: Any, feature_names: list[str]) -> np.ndarray:
    if not isinstance(reference, dict):
        raise ApiError("reference must be an object with rows or path", {"field": "reference"})
    if "rows" in reference:
        rows = reference["rows"]
        if not isinstance(rows, list) or not rows:
            raise ApiError(
                "reference.rows must be a non-empty list of rows", {"field": "reference.rows"}
            )
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(feature_names):
                raise ApiError(
                    f"reference.rows[{i}] must have {len(feature_names)} values",
                    {"field": "reference.rows", "index": i},
                )
        try:
            return np.array(rows, dtype=np.float64)
        except (TypeError, ValueError):
            raise ApiError(
                "reference.rows must hold numbers or null", {"field": "reference.rows"}
            ) from None
    if "path" in reference:
        return _file_matrix(str(reference["path"]), feature_names)
    raise ApiError("reference needs rows or path", {"field": "reference"})


def _file_matrix(path: str, feature_names: list[str]) -> np.ndarray:
    file = Path(path)
    if not file.exists():
        raise ApiError(f"reference file not found: {path}", {"field": "reference.path"})
    try:
        if file.suffix.lower() in (".parquet", ".pq"):
            table = pq.read_table(file)
        elif file.suffix.lower() == ".csv":
            table = pacsv.read_csv(file)
        else:
            raise ApiError(
                f"reference file must be .parquet or .csv: {path}", {"field": "reference.path"}
            )
    except (pa.ArrowInvalid, OSError) as exc:
        raise ApiError(
            f"cannot read reference file {path}: {exc}", {"field": "reference.path"}
        ) from None
    missing = [n for n in feature_names if n not in table.column_names]
    if missing:
        raise ApiError(
            f"reference file {path} has no column {missing[0]!r}",
            {"field": "reference.path", "column": missing[0]},
        )
    columns = []
    for name in feature_names:
        col = table.column(name)
        try:
            columns.append(col.cast(pa.float64()).to_numpy(zero_copy_only=False))
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            raise ApiError(
                f"reference column {name!r} is not numeric",
                {"field": "reference.path", "column": name},
            ) from None
    return np.column_stack(columns).astype(np.float64)


def reference_predictions(reference: dict[str, Any]) -> list[Any] | None:
    """The reference's predictions: `predictions` beside `rows`, or `prediction_column`
    of the file at `path`; None when not given."""
    if "predictions" in reference:
        values = reference["predictions"]
        if not isinstance(values, list) or not values:
            raise ApiError(
                "reference.predictions must be a non-empty list", {"field": "reference.predictions"}
            )
        return values
    column = reference.get("prediction_column")
    if column is None or "path" not in reference:
        return None
    path = str(reference["path"])
    table = (
        pq.read_table(path) if path.lower().endswith((".parquet", ".pq")) else pacsv.read_csv(path)
    )
    if column not in table.column_names:
        raise ApiError(
            f"reference file {path} has no column {column!r}",
            {"field": "reference.prediction_column", "column": column},
        )
    return list(table.column(column).to_pylist())
