"""Parquet files under the data dir, readable by pandas, DuckDB or Polars as they are.

events/endpoint_id={uid}/date={YYYY-MM-DD}/hour={HH}/w{start}.parquet   one closed window
events/endpoint_id={uid}/date=.../hour=.../late-{start}-{seq}.parquet   late events
results/endpoint_id={uid}/date={YYYY-MM-DD}/w{start}.parquet          results + metrics

File names are derived from the window (and first log sequence), so writing the same
window again replaces the file instead of duplicating rows. A file is written to a
temporary name and renamed into place.
"""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from modelmon_daemon.records import ColumnBatch, ResultRecord, WindowMeta

RESULT_SCHEMA = pa.schema(
    [
        ("application", pa.string()),
        ("name", pa.string()),
        ("type", pa.string()),
        ("kind", pa.int8()),
        ("value", pa.float64()),
        ("status", pa.int8()),
        ("start", pa.timestamp("us", tz="UTC")),
        ("end", pa.timestamp("us", tz="UTC")),
        ("extra", pa.string()),
        ("sample_size", pa.int64()),
        ("project", pa.string()),
        ("full_name", pa.string()),
    ]
)


def _day_hour(ts: float) -> tuple[str, int]:
    moment = datetime.fromtimestamp(ts, tz=UTC)
    return moment.strftime("%Y-%m-%d"), moment.hour


def _to_ts(values: np.ndarray) -> pa.Array:
    micros = np.round(values * 1e6).astype("int64")
    return pa.array(micros, type=pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def _float_column(values: np.ndarray) -> pa.Array:
    return pa.array(values, type=pa.float64(), mask=np.isnan(values))


def _object_column(values: np.ndarray) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in values.tolist()], type=pa.string())


def _column(values: np.ndarray) -> pa.Array:
    return _object_column(values) if values.dtype == object else _float_column(values)


def events_table(batch: ColumnBatch, feature_names: list[str], output_names: list[str]) -> pa.Table:
    """One column per feature and output, plus timestamp, request id, latency and error."""
    columns: dict[str, pa.Array] = {
        "timestamp": _to_ts(batch.timestamps),
        "request_id": _object_column(batch.request_ids),
        "latency_us": _float_column(batch.latency_us),
        "error": _object_column(batch.errors),
    }
    for j, name in enumerate(feature_names):
        if j in batch.categorical:
            columns[_safe_name(name, columns)] = _object_column(batch.categorical[j])
        else:
            columns[_safe_name(name, columns)] = _float_column(batch.features[:, j])
    for j, values in enumerate(batch.outputs):
        name = (
            output_names[j] if j < len(output_names) else default_output_name(j, len(batch.outputs))
        )
        columns[_safe_name(name, columns)] = _column(values)
    return pa.table(columns)


def default_output_name(j: int, n: int) -> str:
    return "output" if n == 1 else f"output_{j}"


def _safe_name(name: str, taken: dict[str, Any]) -> str:
    return name if name not in taken else f"{name}_"


def results_table(records: list[ResultRecord], project: str) -> pa.Table:
    rows = [r.to_dict() for r in records]
    return pa.table(
        {
            "application": [r["application"] for r in rows],
            "name": [r["name"] for r in rows],
            "type": [r["type"] for r in rows],
            "kind": [r["kind"] for r in rows],
            "value": [r["value"] for r in rows],
            "status": [r["status"] for r in rows],
            "start": _to_ts(np.asarray([r["start"] for r in rows], dtype=np.float64)),
            "end": _to_ts(np.asarray([r["end"] for r in rows], dtype=np.float64)),
            "extra": [json.dumps(r["extra"], sort_keys=True, default=_json_default) for r in rows],
            "sample_size": [r["sample_size"] for r in rows],
            "project": [project] * len(rows),
            "full_name": [f"{project}.{r['application']}.{r['type']}.{r['name']}" for r in rows],
        },
        schema=RESULT_SCHEMA,
    )


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class ParquetStore:
    def __init__(self, root: str) -> None:
        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), root.rstrip("/")
        self.fs.create_dir(self.root, recursive=True)

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- events -------------------------------------------------------------------------

    def events_files(self, meta: WindowMeta, batch: ColumnBatch) -> list[tuple[str, np.ndarray]]:
        """(path, row mask) per hour the window's rows fall in."""
        hours = np.floor(batch.timestamps / 3600.0)
        out = []
        stem = (
            f"w{int(meta.start)}" if not meta.late else f"late-{int(meta.start)}-{min(meta.seqs)}"
        )
        for hour in np.unique(hours):
            day, hh = _day_hour(float(hour) * 3600.0)
            path = self._path(
                "events",
                f"endpoint_id={meta.uid}",
                f"date={day}",
                f"hour={hh:02d}",
                f"{stem}.parquet",
            )
            out.append((path, hours == hour))
        return out

    def write_events(
        self,
        files: list[tuple[str, np.ndarray]],
        batch: ColumnBatch,
        feature_names: list[str],
        output_names: list[str],
    ) -> None:
        table = events_table(batch, feature_names, output_names)
        for path, mask in files:
            self._write(path, table.filter(pa.array(mask)) if len(files) > 1 else table)

    # -- results ------------------------------------------------------------------------

    def results_file(self, meta: WindowMeta) -> str:
        day, _ = _day_hour(meta.start)
        return self._path(
            "results", f"endpoint_id={meta.uid}", f"date={day}", f"w{int(meta.start)}.parquet"
        )

    def write_results(self, path: str, records: list[ResultRecord], project: str) -> None:
        self._write(path, results_table(records, project))

    def read_results(
        self,
        uid: str,
        start: float | None = None,
        end: float | None = None,
        application: str | None = None,
        name: str | None = None,
    ) -> list[dict[str, Any]]:
        base = self._path("results", f"endpoint_id={uid}")
        info = self.fs.get_file_info(base)
        if info.type != pafs.FileType.Directory:
            return []
        dataset = ds.dataset(
            base,
            format="parquet",
            filesystem=self.fs,
            schema=RESULT_SCHEMA,
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )
        expr = None

        def both(e: Any) -> Any:
            return e if expr is None else expr & e

        if start is not None:
            expr = both(pc.field("end") > pa.scalar(int(start * 1e6), pa.timestamp("us", tz="UTC")))
        if end is not None:
            expr = both(pc.field("start") < pa.scalar(int(end * 1e6), pa.timestamp("us", tz="UTC")))
        if application:
            expr = both(pc.field("application") == application)
        if name:
            expr = both(pc.field("name") == name)
        table = dataset.to_table(filter=expr, columns=list(RESULT_SCHEMA.names))
        table = table.sort_by(
            [
                ("end", "ascending"),
                ("application", "ascending"),
                ("type", "descending"),
                ("name", "ascending"),
            ]
        )
        rows = table.to_pylist()
        for row in rows:
            row["extra"] = json.loads(row["extra"]) if row["extra"] else {}
            row["start"] = _iso(row["start"])
            row["end"] = _iso(row["end"])
            if row["value"] is not None and not math.isfinite(row["value"]):
                row["value"] = None
        return rows

    # -- files --------------------------------------------------------------------------

    def _write(self, path: str, table: pa.Table) -> None:
        parent = path.rsplit("/", 1)[0]
        self.fs.create_dir(parent, recursive=True)
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}.parquet"
        # dictionaries only where values repeat (strings): trying them on float columns
        # costs ~40% of the write and makes files larger
        strings = [
            f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)
        ]
        pq.write_table(
            table, tmp, filesystem=self.fs, compression="zstd", use_dictionary=strings or False
        )
        self.fs.move(tmp, path)

    def delete(self, path: str) -> None:
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            self.fs.delete_file(path)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
