"""Parquet files under the data dir (or storage.parquet_uri), readable by pandas, DuckDB
or Polars as they are.

events/date={YYYY-MM-DD}/hour={HH}/t{first start}-{digest}.parquet   rows of a tick's windows
results/date={YYYY-MM-DD}/r{first start}-{digest}.parquet            results + metrics
labels/endpoint_id={uid}/date={YYYY-MM-DD}/labels-….parquet          ground truth as posted

Events and results of many endpoint-windows share files (one per tick, hour and column
layout for events, per tick and day for results: a fleet of 1000 endpoints writes a file
or two a tick, not 2000), with an `endpoint_id` column they are sorted by, so row-group
statistics let readers skip other endpoints. File names are a digest of the windows they
hold, so writing the same windows again replaces the file instead of duplicating rows. A
local file is written to a temporary name and renamed into place; on an object store
(storage.parquet_uri, e.g. S3) a write is all or nothing by itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, cast

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from modelmon_daemon.core.records import (
    ColumnBatch,
    GeneratedIds,
    RequestIds,
    ResultRecord,
    WindowMeta,
    result_full_name,
)
from modelmon_daemon.core.uris import is_uri

log = logging.getLogger(__name__)

RESULT_SCHEMA = pa.schema(
    [
        ("endpoint_id", pa.string()),
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


MADE_DIRS_KEPT = 100_000  # directories remembered as existing (then forgotten at once)
EVENTS_ROW_GROUP = 65_536  # rows per row group of a shared events file
# columns of an events file with row-group statistics (min, max, nulls): those readers
# select rows by. Features and outputs have none: computing them took a fifth of the
# file's write on the tick's path, and no reader skips row groups by a feature's value
EVENTS_STATISTICS = frozenset({"endpoint_id", "timestamp", "request_id"})
EVENTS_FILE_ROWS = 262_144  # rows per events file of a tick (more: another file)


def _row_chunks(sizes: list[int], items: list[int]) -> list[list[int]]:
    """`items` in order, cut into runs of at most EVENTS_FILE_ROWS rows (a run holds at
    least one item, however large)."""
    runs: list[list[int]] = [[]]
    rows = 0
    for size, item in zip(sizes, items, strict=True):
        if runs[-1] and rows + size > EVENTS_FILE_ROWS:
            runs.append([])
            rows = 0
        runs[-1].append(item)
        rows += size
    return runs


@dataclass
class WindowEvents:
    """A window's (or a late batch's) rows, on their way to the shared events files."""

    meta: WindowMeta
    batch: ColumnBatch
    feature_names: list[str]
    output_names: list[str]


@dataclass
class EventsFile:
    """One shared events file: its path, its rows, and which windows they come from."""

    path: str
    table: pa.Table
    windows: list[int]


def _to_ts(values: np.ndarray) -> pa.Array:
    micros = np.round(values * 1e6).astype("int64")
    return pa.array(micros, type=pa.timestamp("us", tz="UTC"))


def _float_column(values: np.ndarray, missing: np.ndarray | None = None) -> pa.Array:
    """NaN is null. `values` contiguous (a strided column is copied value by value)."""
    missing = np.isnan(values) if missing is None else missing
    return pa.array(values, type=pa.float64(), mask=missing if missing.any() else None)


def _object_column(values: np.ndarray) -> pa.Array:
    try:  # strings and None: converted by pyarrow in one pass
        return pa.array(values, type=pa.string())
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values.tolist()], type=pa.string())


def request_id_column(ids: RequestIds) -> pa.Array:
    """Request ids as Arrow strings (`request_ids_column` of one window)."""
    return request_ids_column([ids])


def request_ids_column(ids: list[RequestIds]) -> pa.Array:
    """Several windows' request ids as one Arrow string column. Ids the daemon generated
    are joined by Arrow from their prefixes and row numbers (the same strings as
    `GeneratedIds.tolist`), so a tick's events file makes no Python string for them:
    when every window's ids were generated, in one call for all of them."""
    if not ids:
        return pa.array([], type=pa.string())
    if all(isinstance(i, GeneratedIds) for i in ids):
        return _joined_ids(cast("list[GeneratedIds]", ids))
    return pa.concat_arrays(
        [
            _joined_ids([i]) if isinstance(i, GeneratedIds) else _object_column(np.asarray(i))
            for i in ids
        ]
    )


def _joined_ids(generated: list[GeneratedIds]) -> pa.Array:
    """prefix + row number of each row: the prefix of each row from a dictionary of the
    runs' prefixes, the row numbers (each run's from its first) cast to strings once."""
    runs = [run for g in generated for run in g.runs]
    counts = np.fromiter((r.n for r in runs), dtype=np.int64, count=len(runs))
    firsts = np.fromiter((r.first for r in runs), dtype=np.int64, count=len(runs))
    starts = np.cumsum(counts) - counts
    rows = np.arange(int(counts.sum()), dtype=np.int64) + np.repeat(firsts - starts, counts)
    owner = np.repeat(np.arange(len(runs), dtype=np.int32), counts)
    prefixes = pa.DictionaryArray.from_arrays(
        pa.array(owner), pa.array([r.prefix for r in runs], type=pa.string())
    ).cast(pa.string())
    return pc.binary_join_element_wise(prefixes, pc.cast(pa.array(rows), pa.string()), "")


def _column(values: np.ndarray) -> pa.Array:
    return _object_column(values) if values.dtype == object else _float_column(values)


def events_table(
    batch: ColumnBatch,
    feature_names: list[str],
    output_names: list[str],
    by_feature: np.ndarray | None = None,
    request_ids: pa.Array | None = None,
) -> pa.Table:
    """One column per feature and output, plus timestamp, request id, latency and error.
    `by_feature`: the features already column-major (features x rows), if at hand;
    `request_ids`: the request-id column, if already made (else from the batch)."""
    columns: dict[str, pa.Array] = {
        "timestamp": _to_ts(batch.timestamps),
        "request_id": request_id_column(batch.request_ids) if request_ids is None else request_ids,
        "latency_us": _float_column(batch.latency_us),
        "error": _object_column(batch.errors),
    }
    if by_feature is None:
        by_feature = np.ascontiguousarray(batch.features.T)  # one copy, not one per column
    missing = np.isnan(by_feature)
    n_outputs = len(batch.outputs)
    outputs = [
        output_names[j] if j < len(output_names) else default_output_name(j, n_outputs)
        for j in range(n_outputs)
    ]
    stored = event_column_names([*feature_names, *outputs])
    for j, name in enumerate(stored[: len(feature_names)]):
        if j in batch.categorical:
            columns[name] = _object_column(batch.categorical[j])
        else:
            columns[name] = _float_column(by_feature[j], missing[j])
    for values, name in zip(batch.outputs, stored[len(feature_names) :], strict=True):
        columns[name] = _column(values)
    return pa.table(columns)


def default_output_name(j: int, n: int) -> str:
    return "output" if n == 1 else f"output_{j}"


# the columns every events file has, and the hive partition keys of its path
EVENT_FIXED_COLUMNS = ("endpoint_id", "timestamp", "request_id", "latency_us", "error")
EVENT_PARTITION_KEYS = ("date", "hour")


def event_column_names(names: Sequence[str]) -> list[str]:
    """The stored column of each feature and output, in order: its name, with "_" added
    while that is a fixed column, a partition key or a column already given. A file
    with two columns of one name, or a column named like a partition key, breaks every
    Parquet reader of the tree (pyarrow, DuckDB, pandas)."""
    taken = {*EVENT_FIXED_COLUMNS, *EVENT_PARTITION_KEYS}
    stored = []
    for name in names:
        column = name
        while column in taken:
            column += "_"
        taken.add(column)
        stored.append(column)
    return stored


def results_table(
    records: Sequence[ResultRecord | dict[str, Any]],
    project: str | list[str],
    endpoint_id: str | list[str] = "",
) -> pa.Table:
    """`records`: as ResultRecords or as their dicts (`to_dict`, what the writer commits);
    `project`, `endpoint_id`: one for all records, or one per record."""
    rows = [r if isinstance(r, dict) else r.to_dict() for r in records]
    endpoints = endpoint_id if isinstance(endpoint_id, list) else [endpoint_id] * len(rows)
    projects = project if isinstance(project, list) else [project] * len(rows)
    return pa.table(
        {
            "endpoint_id": endpoints,
            "application": [r["application"] for r in rows],
            "name": [r["name"] for r in rows],
            "type": [r["type"] for r in rows],
            "kind": [r["kind"] for r in rows],
            "value": [r["value"] for r in rows],
            "status": [r["status"] for r in rows],
            "start": _to_ts(np.asarray([r["start"] for r in rows], dtype=np.float64)),
            "end": _to_ts(np.asarray([r["end"] for r in rows], dtype=np.float64)),
            "extra": [_extra_json(r["extra"]) for r in rows],
            "sample_size": [r["sample_size"] for r in rows],
            "project": projects,
            "full_name": [result_full_name(p, r) for p, r in zip(projects, rows, strict=True)],
        },
        schema=RESULT_SCHEMA,
    )


_EXTRA_OPTIONS = orjson.OPT_SORT_KEYS | orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS


def _extra_json(extra: dict[str, Any]) -> str:
    """A result's extra as JSON text (orjson: several times faster than json; NaN and
    infinities become null, so every stored value is valid JSON)."""
    return orjson.dumps(extra, option=_EXTRA_OPTIONS, default=_json_default).decode()


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


class ParquetStore:
    def __init__(self, root: str) -> None:
        if is_uri(root):
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), root.rstrip("/")
        # a local file system renames a file into place; an object store's write is
        # already all or nothing, and its rename is a copy
        self.local = isinstance(self.fs, pafs.LocalFileSystem)
        self.fs.create_dir(self.root, recursive=True)
        self._made_dirs: set[str] = set()

    def _path(self, *parts: str) -> str:
        return "/".join([self.root, *parts])

    # -- events -------------------------------------------------------------------------

    def events_files(self, windows: list[WindowEvents]) -> list[EventsFile]:
        """The shared events files of one commit: the rows of all its windows, one file
        per column layout and hour (and per EVENTS_FILE_ROWS, at window boundaries, so
        a large tick's files are written in parallel), sorted by `endpoint_id` (then as
        logged). Windows of one layout become one table in one pass. The name is a
        digest of the windows it holds: the same windows written again replace it."""
        layouts: dict[tuple[Any, ...], list[int]] = {}
        for i, window in enumerate(windows):
            batch = window.batch
            if len(batch):
                key = (
                    tuple(window.feature_names),
                    tuple(window.output_names),
                    tuple(sorted(batch.categorical)),
                    tuple(o.dtype == object for o in batch.outputs),
                )
                layouts.setdefault(key, []).append(i)
        out: list[EventsFile] = []
        for layout, members in layouts.items():
            members.sort(key=lambda i: (windows[i].meta.uid, windows[i].meta.start))
            for chunk in _row_chunks([len(windows[i].batch) for i in members], members):
                out.extend(self._layout_files(repr(layout), [windows[i] for i in chunk], chunk))
        return out

    def _layout_files(
        self, layout: str, windows: list[WindowEvents], indices: list[int]
    ) -> list[EventsFile]:
        first = windows[0]
        batches = [w.batch for w in windows]
        counts = np.fromiter((len(b) for b in batches), dtype=np.int64, count=len(batches))
        # features column-major, one small transposed copy per window (5x faster than
        # transposing the concatenated rows); the other columns concatenated as they are
        n_features = len(first.feature_names)
        by_feature = np.empty((n_features, int(counts.sum())))
        offset = 0
        for b in batches:
            by_feature[:, offset : offset + len(b)] = b.features.T
            offset += len(b)
        # request ids made per window (generated ones by Arrow), not concatenated as
        # Python strings: the batch below carries none
        request_ids = request_ids_column([b.request_ids for b in batches])
        no_features = [
            replace(b, features=b.features[:, :0], request_ids=np.empty(len(b), dtype=object))
            for b in batches
        ]
        batch = ColumnBatch.concat(no_features, 0, len(first.batch.outputs))
        table = events_table(
            batch, first.feature_names, first.output_names, by_feature, request_ids
        )
        owner = np.repeat(np.arange(len(windows), dtype=np.int32), counts)
        uids = pa.array([w.meta.uid for w in windows], type=pa.string())
        ids = pa.DictionaryArray.from_arrays(pa.array(owner), uids).cast(pa.string())
        table = table.add_column(0, "endpoint_id", ids)
        hours = np.floor(batch.timestamps / 3600.0)
        out = []
        for hour in np.unique(hours):
            mask = hours == hour
            part = table if mask.all() else table.filter(pa.array(mask))
            held = np.unique(owner[mask]).tolist()
            keys = [layout]
            for k in held:
                meta = windows[k].meta
                keys.append(f"{meta.uid}/{meta.start!r}/{meta.late}/{min(meta.seqs, default=0)}")
            digest = hashlib.sha1("\n".join(keys).encode()).hexdigest()[:16]
            start = int(min(windows[k].meta.start for k in held))
            day, hh = _day_hour(float(hour) * 3600.0)
            name = f"t{start}-{digest}.parquet"
            path = self._path("events", f"date={day}", f"hour={hh:02d}", name)
            out.append(EventsFile(path, part, sorted(indices[k] for k in held)))
        return out

    def write_events(self, file: EventsFile) -> None:
        # lz4 on the tick's path (a third faster than zstd); compaction rewrites past
        # days' files with zstd. Row groups of 64k rows: statistics of the sorted
        # endpoint_id let readers of one endpoint skip the rest of the file
        self._write(
            file.path,
            file.table,
            compression="lz4",
            row_group_size=EVENTS_ROW_GROUP,
            statistics=[n for n in file.table.column_names if n in EVENTS_STATISTICS],
        )

    def write_labels(self, uid: str, ids: list[str], labels: list[Any], now: float) -> str:
        """Ground truth as posted: one file per request, under the endpoint and day."""
        day = datetime.fromtimestamp(now, tz=UTC).strftime("%Y-%m-%d")
        path = self._path(
            "labels",
            f"endpoint_id={uid}",
            f"date={day}",
            f"labels-{int(now * 1e6)}-{uuid.uuid4().hex[:8]}.parquet",
        )
        received = np.full(len(ids), int(now * 1e6), dtype=np.int64)
        table = pa.table(
            {
                "request_id": [str(r) for r in ids],
                "label": [None if v is None else str(v) for v in labels],
                "received": pa.array(received, type=pa.timestamp("us", tz="UTC")),
            }
        )
        self._write(path, table)
        return path

    def events_paths(self, start: float | None = None, end: float | None = None) -> list[str]:
        """The events files whose hour partition overlaps [start, end), oldest first."""
        base = self._path("events")
        first = _day_hour(start) if start is not None else None
        last = _day_hour(end - 1e-6) if end is not None else None
        out = []
        for day_dir in self._children(base, "date="):
            day = day_dir.rsplit("=", 1)[1]
            if (first and day < first[0]) or (last and day > last[0]):
                continue
            for hour_dir in self._children(day_dir, "hour="):
                hour = int(hour_dir.rsplit("=", 1)[1])
                if (first and (day, hour) < first) or (last and (day, hour) > last):
                    continue
                out.extend(self._children(hour_dir, "", files=True))
        return out

    def _children(self, folder: str, prefix: str, files: bool = False) -> list[str]:
        selector = pafs.FileSelector(folder, allow_not_found=True)
        wanted = pafs.FileType.File if files else pafs.FileType.Directory
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == wanted
            and info.base_name.startswith(prefix)
            and not info.base_name.startswith((".", "_"))
            and (not files or info.base_name.endswith(".parquet"))
        )

    def read_events(
        self,
        uid: str,
        start: float | None = None,
        end: float | None = None,
        limit: int = 0,
        _attempt: int = 0,
    ) -> tuple[pa.Table, bool]:
        """An endpoint's stored events with start <= timestamp < end, oldest first, at
        most `limit` rows (0: all); returns (table, truncated). Only the hour partitions
        in range are listed, and row-group statistics of `endpoint_id` skip other
        endpoints' rows in each file."""
        expr = pc.field("endpoint_id") == uid
        stamp = pa.timestamp("us", tz="UTC")
        if start is not None:
            expr = expr & (pc.field("timestamp") >= pa.scalar(int(start * 1e6), stamp))
        if end is not None:
            expr = expr & (pc.field("timestamp") < pa.scalar(int(end * 1e6), stamp))
        tables = []
        try:
            for path in self.events_paths(start, end):
                try:
                    dataset = ds.dataset(path, format="parquet", filesystem=self.fs)
                    found = dataset.to_table(filter=expr)
                except FileNotFoundError:
                    raise
                except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
                    # not one of ours (unreadable, or without endpoint_id): never fatal
                    log.warning("events: skipped %s: %s", path, exc)
                    continue
                if found.num_rows:
                    tables.append(found.drop_columns(["endpoint_id"]))
        except FileNotFoundError:  # compacted or expired meanwhile: look again
            if _attempt >= 2:
                raise
            return self.read_events(uid, start, end, limit, _attempt + 1)
        if not tables:
            return pa.table({}), False
        try:
            table = pa.concat_tables(tables, promote_options="default")
        except (pa.ArrowInvalid, pa.ArrowTypeError):  # an output's type changed over time
            table = pa.concat_tables(tables, promote_options="permissive")
        table = table.sort_by([("timestamp", "ascending")])
        truncated = bool(limit) and table.num_rows > limit
        return (table.slice(0, limit) if truncated else table), truncated

    # -- results ------------------------------------------------------------------------

    def results_files(
        self, windows: Sequence[tuple[WindowMeta, Sequence[ResultRecord | dict[str, Any]], str]]
    ) -> list[tuple[str, pa.Table]]:
        """One (path, table) per day for the results of many windows (meta, records,
        project), rows sorted by endpoint and time. The name is a digest of the windows
        it holds: the same windows written again replace the file."""
        by_day: dict[
            str, list[tuple[WindowMeta, Sequence[ResultRecord | dict[str, Any]], str]]
        ] = {}
        for meta, records, project in windows:
            if records:
                by_day.setdefault(_day_hour(meta.start)[0], []).append((meta, records, project))
        out = []
        for day, members in sorted(by_day.items()):
            members.sort(key=lambda m: (m[0].uid, m[0].start))
            keys = "\n".join(f"{m.uid}/{m.start!r}/{m.late}" for m, _, _ in members)
            digest = hashlib.sha1(keys.encode()).hexdigest()[:16]
            first = int(min(m.start for m, _, _ in members))
            records = [r for _, rs, _ in members for r in rs]
            table = results_table(
                records,
                [p for _, rs, p in members for _ in rs],
                [m.uid for m, rs, _ in members for _ in rs],
            )
            path = self._path("results", f"date={day}", f"r{first}-{digest}.parquet")
            out.append((path, table))
        return out

    def write_table(self, path: str, table: pa.Table) -> None:
        self._write(path, table)

    def migrate_results(self) -> int:
        """Move results of the per-endpoint layout (results/endpoint_id=…/date=…/) into
        the shared one, once; returns the files moved. Idempotent: a file already moved is
        only deleted."""
        base = self._path("results")
        moved = 0
        for info in self.fs.get_file_info(pafs.FileSelector(base, allow_not_found=True)):
            name = info.path.rsplit("/", 1)[-1]
            if info.type != pafs.FileType.Directory or not name.startswith("endpoint_id="):
                continue
            uid = name.split("=", 1)[1]
            selector = pafs.FileSelector(info.path, recursive=True)
            for f in self.fs.get_file_info(selector):
                if f.type != pafs.FileType.File or not f.path.endswith(".parquet"):
                    continue
                day = f.path.rsplit("/", 2)[-2].split("=", 1)[-1]
                stem = f.path.rsplit("/", 1)[-1]
                target = self._path("results", f"date={day}", f"legacy-{uid}-{stem}")
                if self.fs.get_file_info(target).type != pafs.FileType.File:
                    table = pq.read_table(f.path, filesystem=self.fs)
                    if "endpoint_id" in table.column_names:
                        table = table.drop(["endpoint_id"])
                    table = table.add_column(0, "endpoint_id", pa.array([uid] * len(table)))
                    self._write(target, table.select(RESULT_SCHEMA.names).cast(RESULT_SCHEMA))
                self.fs.delete_file(f.path)
                moved += 1
            self.fs.delete_dir(info.path)
        return moved

    def migrate_events(self) -> int:
        """Move events of the per-endpoint layout (events/endpoint_id=…/date=…/hour=…/)
        into the shared one, an `endpoint_id` column added, once; returns the files moved.
        Idempotent: a file already moved is only deleted."""
        base = self._path("events")
        moved = 0
        for folder in self._children(base, "endpoint_id="):
            uid = folder.rsplit("=", 1)[1]
            selector = pafs.FileSelector(folder, recursive=True)
            for f in self.fs.get_file_info(selector):
                if f.type == pafs.FileType.File and f.base_name.startswith("."):
                    self.fs.delete_file(f.path)  # a write that never finished
                    continue
                if f.type != pafs.FileType.File or not f.base_name.endswith(".parquet"):
                    continue
                day, hour = f.path.rsplit("/", 3)[-3:-1]
                target = self._path("events", day, hour, f"legacy-{uid}-{f.base_name}")
                if self.fs.get_file_info(target).type != pafs.FileType.File:
                    table = pq.read_table(f.path, filesystem=self.fs)
                    ids = pa.array([uid] * table.num_rows, type=pa.string())
                    self._write(target, table.add_column(0, "endpoint_id", ids))
                self.fs.delete_file(f.path)
                moved += 1
            self.fs.delete_dir(folder)
        return moved

    def read_results(
        self,
        uid: str,
        start: float | None = None,
        end: float | None = None,
        application: str | None = None,
        name: str | None = None,
        _attempt: int = 0,
    ) -> list[dict[str, Any]]:
        base = self._path("results")
        info = self.fs.get_file_info(base)
        if info.type != pafs.FileType.Directory:
            return []
        dataset = ds.dataset(
            base,
            format="parquet",
            filesystem=self.fs,
            schema=RESULT_SCHEMA.append(pa.field("date", pa.string())),
            partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
            exclude_invalid_files=False,
            ignore_prefixes=[".", "_"],
        )
        expr = pc.field("endpoint_id") == uid

        def both(e: Any) -> Any:
            return expr & e

        if start is not None:
            expr = both(pc.field("end") > pa.scalar(int(start * 1e6), pa.timestamp("us", tz="UTC")))
        if end is not None:
            expr = both(pc.field("start") < pa.scalar(int(end * 1e6), pa.timestamp("us", tz="UTC")))
        if application:
            expr = both(pc.field("application") == application)
        if name:
            expr = both(pc.field("name") == name)
        columns = [n for n in RESULT_SCHEMA.names if n != "endpoint_id"]
        try:
            table = _results_table(dataset, expr, columns)
        except FileNotFoundError:  # compacted or expired meanwhile: look again
            if _attempt >= 2:
                raise
            return self.read_results(uid, start, end, application, name, _attempt + 1)
        table = table.sort_by(
            [
                ("end", "ascending"),
                ("application", "ascending"),
                ("type", "descending"),
                ("name", "ascending"),
            ]
        )
        rows = []
        for row in table.to_pylist():
            if row["start"] is None or row["end"] is None:
                continue  # not a result of ours: a window always has both
            row["extra"] = _stored_extra(row["extra"])
            row["start"] = _iso(row["start"])
            row["end"] = _iso(row["end"])
            if row["value"] is not None and not math.isfinite(row["value"]):
                row["value"] = None
            rows.append(row)
        return rows

    def purge(self, uid: str) -> int:
        """Delete an endpoint's stored data: its labels folder, and its rows of the shared
        events and results files (rewritten without them). Returns the files changed."""
        changed = 0
        folder = self._path("labels", f"endpoint_id={uid}")
        if self.fs.get_file_info(folder).type == pafs.FileType.Directory:
            self.fs.delete_dir(folder)
            changed += 1
        for top in ("events", "results"):
            selector = pafs.FileSelector(self._path(top), recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if (
                    info.type == pafs.FileType.File
                    and info.base_name.endswith(".parquet")
                    and not info.base_name.startswith(".")
                ):
                    changed += self._drop_endpoint(info.path, uid)
        return changed

    def _drop_endpoint(self, path: str, uid: str) -> int:
        """Rewrite a shared file without an endpoint's rows (delete it if none are left);
        1 if it held any. Files whose statistics rule the endpoint out are not read."""
        if not self._may_hold(path, uid):
            return 0
        table = pq.read_table(path, filesystem=self.fs)
        keep = pc.not_equal(table.column("endpoint_id"), uid)
        if pc.all(keep).as_py():
            return 0
        rest = table.filter(keep)
        if rest.num_rows:
            self._write(path, rest)
        else:
            self.fs.delete_file(path)
        return 1

    def _may_hold(self, path: str, uid: str) -> bool:
        try:
            with self.fs.open_input_file(path) as source:
                meta = pq.ParquetFile(source).metadata
        except (pa.ArrowInvalid, OSError):  # gone, or not a Parquet file: holds nothing
            return False
        names = [meta.schema.column(i).name for i in range(meta.num_columns)]
        if "endpoint_id" not in names:
            return False
        column = names.index("endpoint_id")
        for g in range(meta.num_row_groups):
            stats = meta.row_group(g).column(column).statistics
            if stats is None or not stats.has_min_max or stats.min <= uid <= stats.max:
                return True
        return False

    # -- maintenance --------------------------------------------------------------------

    def partitions(self, before_day: str) -> list[str]:
        """Leaf partition folders (results/date=…, events/…/date=…/hour=…,
        labels/…/date=…) whose day is before `before_day` (YYYY-MM-DD)."""
        out = []
        for top in ("results", "events", "labels"):
            base = self._path(top)
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                if info.type != pafs.FileType.Directory:
                    continue
                parts = info.path[len(base) + 1 :].split("/")
                days = [p.split("=", 1)[1] for p in parts if p.startswith("date=")]
                leaf = parts[-1].startswith("hour=") or (
                    parts[-1].startswith("date=") and top != "events"
                )
                if days and leaf and days[0] < before_day:
                    out.append(info.path)
        return sorted(out)

    def expire(self, before_day: str) -> int:
        """Delete every partition of a day before `before_day` (storage.retention)."""
        removed = 0
        for top in ("results", "events", "labels"):
            base = self._path(top)
            selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
            for info in self.fs.get_file_info(selector):
                name = info.path.rsplit("/", 1)[-1]
                if (
                    info.type == pafs.FileType.Directory
                    and name.startswith("date=")
                    and name.split("=", 1)[1] < before_day
                ):
                    self.fs.delete_dir(info.path)
                    removed += 1
        return removed

    def compact(self, directory: str, busy: set[str]) -> int:
        """Merge the Parquet files of one partition folder into one, sorted; returns how
        many files it replaced. Files in `busy` (being written: pending) are left alone.
        Crash-safe: the merged file lists its sources in its metadata, and sources that
        a merged file already holds are deleted first (an interrupted compaction is
        finished, never doubled)."""
        selector = pafs.FileSelector(directory, allow_not_found=True)
        files = sorted(
            f.path
            for f in self.fs.get_file_info(selector)
            if f.type == pafs.FileType.File
            and f.path.endswith(".parquet")
            and not f.path.rsplit("/", 1)[-1].startswith(".")
            and f.path not in busy
        )
        merged = [f for f in files if f.rsplit("/", 1)[-1].startswith("compacted-")]
        for path in merged:
            meta = pq.read_schema(path, filesystem=self.fs).metadata or {}
            for name in json.loads(meta.get(b"modelmon_sources", b"[]")):
                source = f"{directory}/{name}"
                if source in files and source != path:
                    self.fs.delete_file(source)
                    files.remove(source)
        # one merged file per column layout (an events hour holds endpoints that differ
        # in their features; merging them would give each the others' columns)
        layouts: dict[str, list[str]] = {}
        for f in files:
            try:
                schema = pq.read_schema(f, filesystem=self.fs).remove_metadata()
            except (pa.ArrowInvalid, OSError):  # not a Parquet file: left as it is
                log.warning("compaction: skipped %s (not readable as Parquet)", f)
                continue
            layouts.setdefault(schema.to_string(), []).append(f)
        replaced = 0
        for group in layouts.values():
            if len(group) > 1:
                replaced += self._merge(directory, group)
        return replaced

    def _merge(self, directory: str, files: list[str]) -> int:
        tables = [pq.read_table(f, filesystem=self.fs) for f in files]
        table = pa.concat_tables(tables, promote_options="default")
        keys = [k for k in ("endpoint_id", "start", "timestamp") if k in table.column_names]
        table = table.sort_by([(k, "ascending") for k in keys])
        names = [f.rsplit("/", 1)[-1] for f in files]
        digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:16]
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"modelmon_sources": json.dumps(names).encode()}
        )
        events = "timestamp" in table.column_names  # a results file has start and end
        self._write(
            f"{directory}/compacted-{digest}.parquet",
            table,
            row_group_size=EVENTS_ROW_GROUP,
            statistics=[n for n in table.column_names if n in EVENTS_STATISTICS]
            if events
            else True,
        )
        for f in files:
            self.fs.delete_file(f)
        return len(files)

    # -- files --------------------------------------------------------------------------

    def _write(
        self,
        path: str,
        table: pa.Table,
        compression: str = "zstd",
        row_group_size: int | None = None,
        statistics: bool | list[str] = True,
    ) -> None:
        """`statistics`: every column's row-group statistics, or only these columns'."""
        parent = path.rsplit("/", 1)[0]
        # not *.parquet: a glob such as DuckDB's never meets a half-written file
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}" if self.local else path
        # dictionaries only where values repeat (strings): trying them on float columns
        # costs ~40% of the write and makes files larger
        strings = [
            f.name for f in table.schema if pa.types.is_string(f.type) or pa.types.is_binary(f.type)
        ]

        def write() -> None:
            pq.write_table(
                table,
                tmp,
                filesystem=self.fs,
                compression=compression,
                use_dictionary=strings or False,
                row_group_size=row_group_size,
                write_statistics=statistics,
            )

        if parent not in self._made_dirs:
            self._make_dir(parent)
        try:
            write()
        except FileNotFoundError:  # the directory went since (retention, purge): again
            self._make_dir(parent)
            write()
        if tmp != path:
            self.fs.move(tmp, path)

    def _make_dir(self, path: str) -> None:
        """Create a directory (and its parents), remembering it: a tick writes a thousand
        files into directories that mostly exist, and each check cost a few stat calls."""
        self.fs.create_dir(path, recursive=True)
        if len(self._made_dirs) >= MADE_DIRS_KEPT:
            self._made_dirs.clear()
        self._made_dirs.add(path)

    def sync(self) -> None:
        """Make every file written so far durable (one flush of the data dir's file
        system, not one fsync per file): called before the LMDB commit that lets the
        log forget the rows these files hold. Object stores are durable on write."""
        if not self.local:
            return
        fd = os.open(self.root, os.O_RDONLY)
        try:
            if _LIBC is not None and _LIBC.syncfs(fd) == 0:
                return
            os.fsync(fd)
            os.sync()
        finally:
            os.close(fd)

    def delete(self, path: str) -> None:
        info = self.fs.get_file_info(path)
        if info.type == pafs.FileType.File:
            self.fs.delete_file(path)


def _load_libc() -> Any:
    try:
        import ctypes
        import ctypes.util

        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        libc.syncfs.argtypes = [ctypes.c_int]
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _load_libc()


def _results_table(dataset: ds.Dataset, expr: Any, columns: list[str]) -> pa.Table:
    """The matching rows of every results file; if one is not ours (unreadable, another
    schema), file by file, skipping those, so it cannot hide the others."""
    try:
        return dataset.to_table(filter=expr, columns=columns)
    except FileNotFoundError:
        raise
    except (pa.ArrowInvalid, pa.ArrowTypeError, OSError):
        return _readable_fragments(dataset, expr, columns)


def _readable_fragments(dataset: ds.Dataset, expr: Any, columns: list[str]) -> pa.Table:
    """The rows of every file of `dataset` that can be read, skipping (and logging) the
    others: one foreign or damaged file must not break a read of all results."""
    tables = []
    for fragment in dataset.get_fragments():
        try:
            tables.append(fragment.to_table(filter=expr, columns=columns, schema=dataset.schema))
        except FileNotFoundError:
            raise
        except (pa.ArrowInvalid, pa.ArrowTypeError, OSError) as exc:
            log.warning("results: skipped %s: %s", fragment.path, exc)
    if not tables:
        return dataset.schema.empty_table().select(columns)
    return pa.concat_tables(tables)


def _stored_extra(text: str | None) -> dict[str, Any]:
    """A result's stored `extra`: the JSON object written with it. Anything else (edited
    or foreign files) is given back as text under `unreadable`, never an error."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {"unreadable": text[:1000]}
    return value if isinstance(value, dict) else {"unreadable": text[:1000]}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
