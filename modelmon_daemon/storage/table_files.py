"""The user's data files (reference data at registration, `evaluate`'s data): Parquet or
CSV, read into Arrow, with errors that name the file and, in a CSV, the line.

Messages never quote the file's content: a reference path comes over HTTP, and the
answer must not echo what a host file holds."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

PARQUET_SUFFIXES = (".parquet", ".pq")
# what Arrow reads as null in a numeric CSV column ("", "NA", "NaN", "null", ...)
CSV_NULLS = frozenset(pacsv.ConvertOptions().null_values)


class TableFileError(ValueError):
    """What is wrong with a data file, where: `line` is the CSV line (1 = the header),
    `row` the data row (0-based) of a Parquet file, `column` the column's name."""

    def __init__(
        self,
        path: str,
        message: str,
        line: int | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.path, self.message, self.line, self.column, self.row = path, message, line, column, row
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: {message}")


def is_csv(path: str) -> bool:
    return Path(path).suffix.lower() == ".csv"


def read_table(path: str) -> pa.Table:
    file = Path(path)
    if not file.is_file():
        raise TableFileError(path, "no such file")
    suffix = file.suffix.lower()
    if suffix in PARQUET_SUFFIXES:
        try:
            return pq.read_table(file)
        except (pa.ArrowInvalid, OSError):
            raise TableFileError(path, "not a readable Parquet file") from None
    if suffix != ".csv":
        raise TableFileError(path, "must be .parquet or .csv")
    try:
        return pacsv.read_csv(file)
    except (pa.ArrowInvalid, OSError):
        pass
    line, expected, got = _ragged_line(file)
    if line is not None:
        raise TableFileError(path, f"{got} values where the header has {expected}", line=line)
    raise TableFileError(path, "not a readable CSV file")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def float_column(table: pa.Table, name: str, path: str) -> np.ndarray:
    """Column `name` as float64 (null -> NaN); an error naming the line (CSV) or row
    (Parquet) of the first value that is no number."""
    column = table.column(name)
    try:
        return np.asarray(column.cast(pa.float64()).to_numpy(zero_copy_only=False), np.float64)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        pass
    row = _first_non_number(column)
    if row is None:  # a type no cast reaches (lists, structs): the column as a whole
        raise TableFileError(path, f"column {name!r} is not numeric", column=name)
    message = f"column {name!r}: not a number"
    if is_csv(path):
        raise TableFileError(path, message, line=_csv_line_of_row(Path(path), row), column=name)
    raise TableFileError(path, f"{message} (row {row})", column=name, row=row)


def _first_non_number(column: pa.ChunkedArray) -> int | None:
    if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
        return None
    for row, value in enumerate(column.to_pylist()):
        if value is not None and value not in CSV_NULLS and not _is_number(value):
            return row
    return None


def _header(file: Path) -> list[str]:
    with file.open(newline="", encoding="utf-8") as handle:
        return next(csv.reader(handle))


def _records(file: Path) -> list[tuple[int, list[str]]]:
    """(line where the record ends, fields) of every non-empty record, header first."""
    out = []
    with file.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        for record in reader:
            if record:  # Arrow skips empty lines too
                out.append((reader.line_num, record))
    return out


def _ragged_line(file: Path) -> tuple[int | None, int, int]:
    """The first record whose number of fields differs from the header's."""
    try:
        records = _records(file)
    except (csv.Error, UnicodeDecodeError, OSError):
        return None, 0, 0
    if not records:
        return None, 0, 0
    expected = len(records[0][1])
    for line, fields in records[1:]:
        if len(fields) != expected:
            return line, expected, len(fields)
    return None, expected, 0


def _csv_line_of_row(file: Path, row: int) -> int | None:
    try:
        records = _records(file)
    except (csv.Error, UnicodeDecodeError, OSError):
        return None
    return records[row + 1][0] if row + 1 < len(records) else None
