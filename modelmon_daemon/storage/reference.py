"""Reference data given at registration: rows, or a Parquet/CSV file, -> a float matrix."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from modelmon_daemon.core.errors import ApiError
from modelmon_daemon.storage import table_files
from modelmon_daemon.storage.remote_files import shown


def reference_columns(
    reference: Any, feature_names: list[str], categorical: set[str]
) -> tuple[np.ndarray, dict[str, list[Any]], set[str]]:
    """(numeric matrix with NaN in categorical columns, categorical values by name, the
    categorical feature names). A column holding strings is categorical even if not
    declared."""
    if isinstance(reference, dict) and isinstance(reference.get("rows"), list):
        rows = reference["rows"]
        if not rows:
            raise ApiError(
                "reference.rows must be a non-empty list of rows", {"field": "reference.rows"}
            )
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(feature_names):
                raise ApiError(
                    f"reference.rows[{i}] must have {len(feature_names)} values",
                    {"field": "reference.rows", "index": i},
                )
        found = set(categorical) | {
            feature_names[j]
            for j in range(len(feature_names))
            if any(isinstance(row[j], str) for row in rows)
        }
        if not found:
            return reference_matrix(reference, feature_names), {}, set()
        values = {n: [row[j] for row in rows] for j, n in enumerate(feature_names) if n in found}
        numeric = [
            [None if feature_names[j] in found else v for j, v in enumerate(row)] for row in rows
        ]
        return reference_matrix({"rows": numeric}, feature_names), values, found
    if isinstance(reference, dict) and "path" in reference:
        table = _read(str(reference["path"]))
        strings = {
            n
            for n in feature_names
            if n in table.column_names
            and (
                pa.types.is_string(table.column(n).type)
                or pa.types.is_large_string(table.column(n).type)
            )
        }
        found = set(categorical) | strings
        values = {n: table.column(n).to_pylist() for n in found if n in table.column_names}
        numeric_names = [n for n in feature_names if n not in found]
        matrix = np.full((table.num_rows, len(feature_names)), np.nan)
        if numeric_names:
            sub = _file_matrix(str(reference["path"]), numeric_names, table)
            for k, n in enumerate(numeric_names):
                matrix[:, feature_names.index(n)] = sub[:, k]
        return matrix, values, found
    return reference_matrix(reference, feature_names), {}, set()


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


def _read(path: str) -> pa.Table:
    try:
        return table_files.read_table(path)
    except table_files.TableFileError as exc:
        raise _api_error(exc) from None


def _api_error(exc: table_files.TableFileError) -> ApiError:
    """A data file's error as a 400 naming `reference.path` (and the line or row, and
    the column, when known); its message never quotes the file."""
    details: dict[str, Any] = {"field": "reference.path"}
    for key in ("line", "row", "column"):
        if getattr(exc, key) is not None:
            details[key] = getattr(exc, key)
    where = shown(exc.path) + (f":{exc.line}" if exc.line is not None else "")
    return ApiError(f"reference file {where}: {exc.message}", details)


def _file_matrix(path: str, feature_names: list[str], table: pa.Table | None = None) -> np.ndarray:
    if table is None:
        table = _read(path)
    missing = [n for n in feature_names if n not in table.column_names]
    if missing:
        raise ApiError(
            f"reference file {shown(path)} has no column {missing[0]!r}",
            {"field": "reference.path", "column": missing[0]},
        )
    try:
        columns = [table_files.float_column(table, name, path) for name in feature_names]
    except table_files.TableFileError as exc:
        raise _api_error(exc) from None
    return np.column_stack(columns).astype(np.float64)


def reference_predictions(reference: dict[str, Any]) -> list[Any] | None:
    """The reference's predictions: `predictions` beside `rows`, or `prediction_column`
    of the file at `path`; None when not given."""
    return reference_values(reference, "predictions", "prediction_column")


def reference_values(reference: dict[str, Any], key: str, column_key: str) -> list[Any] | None:
    """A per-row list of the reference: `key` beside `rows` (e.g. `labels`), or the file
    column named by `column_key` (e.g. `label_column`); None when neither is given."""
    if key in reference:
        values = reference[key]
        if not isinstance(values, list) or not values:
            raise ApiError(
                f"reference.{key} must be a non-empty list", {"field": f"reference.{key}"}
            )
        return values
    column = reference.get(column_key)
    if column is None or "path" not in reference:
        return None
    return reference_file_column(str(reference["path"]), column, f"reference.{column_key}")


def reference_file_column(path: str, column: Any, field: str) -> list[Any]:
    """One column of a reference file as a list; `field` names the request field."""
    if not isinstance(column, str):
        raise ApiError(f"{field} must be a column name", {"field": field})
    table = _read(path)
    if column not in table.column_names:
        raise ApiError(
            f"reference file {shown(path)} has no column {column!r}",
            {"field": field, "column": column},
        )
    return list(table.column(column).to_pylist())
