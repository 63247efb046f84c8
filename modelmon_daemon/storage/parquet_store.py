"""Parquet files under the data dir, readable by pandas, DuckDB or Polars as they are.

events/endpoint_id={uid}/date={YYYY-MM-DD}/hour={HH}/w{start}.parquet   one closed window
events/endpoint_id={uid}/date=.../hour=.../late-{start}-{seq}.parquet   late events
results/date={YYYY-MM-DD}/r{first start}-{digest}.parquet              results + metrics

Results of many endpoint-windows share a file (one per tick and day: a fleet of 1000
endpoints writes one file a tick, not 1000), sorted by `endpoint_id` so row-group
statistics let readers skip other endpoints. File names are derived from the windows they
hold (window start and first log sequence; a digest of the (endpoint, window) set), so
writing the same windows again replaces the file instead of duplicating rows. A file is
written to a temporary name and renamed into place.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from datetime import UTC, datetime
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from modelmon_daemon.core.records import ColumnBatch, ResultRecord, WindowMeta

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
    by_feature = np.ascontiguousarray(batch.features.T)  # one copy, not one per column
    missing = np.isnan(by_feature)
    for j, name in enumerate(feature_names):
        if j in batch.categorical:
            columns[_safe_name(name, columns)] = _object_column(batch.categorical[j])
        else:
            columns[_safe_name(name, columns)] = _float_column(by_feature[j], missing[j])
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


def results_table(
    records: list[ResultRecord], project: str | list[str], endpoint_id: str | list[str] = ""
) -> pa.Table:
    """`project`, `endpoint_id`: one for all records, or one per record."""
    rows = [r.to_dict() for r in records]
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
            "full_name": [
                f"{p}.{r['application']}.{r['type']}.{r['name']}"
                for p, r in zip(projects, rows, strict=True)
            ],
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
        if "://" in root:
            self.fs, self.root = pafs.FileSystem.from_uri(root)
        else:
            self.fs, self.root = pafs.LocalFileSystem(), root.rstrip("/")
        self.fs.create_dir(self.root, recursive=True)
        self._made_dirs: set[str] = set()

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
            # lz4 on the tick's path (a third faster than zstd); compaction rewrites the
            # day's files with zstd
            part = table.filter(pa.array(mask)) if len(files) > 1 else table
            self._write(path, part, compression="lz4")

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

    def read_events(
        self, uid: str, start: float | None = None, end: float | None = None, limit: int = 0
    ) -> tuple[pa.Table, bool]:
        """An endpoint's stored events with start <= timestamp < end, oldest first, at
        most `limit` rows (0: all); returns (table, truncated)."""
        base = self._path("events", f"endpoint_id={uid}")
        if self.fs.get_file_info(base).type != pafs.FileType.Directory:
            return pa.table({}), False
        dataset = ds.dataset(
            base,
            format="parquet",
            filesystem=self.fs,
            partitioning=ds.partitioning(
                pa.schema([("date", pa.string()), ("hour", pa.string())]), flavor="hive"
            ),
            ignore_prefixes=[".", "_"],
        )
        expr = None
        stamp = pa.timestamp("us", tz="UTC")
        if start is not None:
            expr = pc.field("timestamp") >= pa.scalar(int(start * 1e6), stamp)
        if end is not None:
            upper = pc.field("timestamp") < pa.scalar(int(end * 1e6), stamp)
            expr = upper if expr is None else expr & upper
        columns = [n for n in dataset.schema.names if n not in ("date", "hour")]
        try:
            table = dataset.to_table(filter=expr, columns=columns)
        except FileNotFoundError:  # compacted meanwhile
            return self.read_events(uid, start, end, limit)
        table = table.sort_by([("timestamp", "ascending")])
        truncated = bool(limit) and table.num_rows > limit
        return (table.slice(0, limit) if truncated else table), truncated

    # -- results ------------------------------------------------------------------------

    def results_files(
        self, windows: list[tuple[WindowMeta, list[ResultRecord], str]]
    ) -> list[tuple[str, pa.Table]]:
        """One (path, table) per day for the results of many windows (meta, records,
        project), rows sorted by endpoint and time. The name is a digest of the windows
        it holds: the same windows written again replace the file."""
        by_day: dict[str, list[tuple[WindowMeta, list[ResultRecord], str]]] = {}
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
            table = dataset.to_table(filter=expr, columns=columns)
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
        rows = table.to_pylist()
        for row in rows:
            row["extra"] = json.loads(row["extra"]) if row["extra"] else {}
            row["start"] = _iso(row["start"])
            row["end"] = _iso(row["end"])
            if row["value"] is not None and not math.isfinite(row["value"]):
                row["value"] = None
        return rows

    def purge(self, uid: str) -> int:
        """Delete an endpoint's stored data: its events and labels folders, and its rows of
        the shared results files (rewritten without them). Returns the files changed."""
        changed = 0
        for top in ("events", "labels"):
            folder = self._path(top, f"endpoint_id={uid}")
            if self.fs.get_file_info(folder).type == pafs.FileType.Directory:
                self.fs.delete_dir(folder)
                changed += 1
        selector = pafs.FileSelector(self._path("results"), recursive=True, allow_not_found=True)
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
                continue
            if info.path.rsplit("/", 1)[-1].startswith("."):
                continue
            table = pq.read_table(info.path, filesystem=self.fs)
            keep = pc.not_equal(table.column("endpoint_id"), uid)
            if pc.all(keep).as_py():
                continue
            rest = table.filter(keep)
            if rest.num_rows:
                self._write(info.path, rest)
            else:
                self.fs.delete_file(info.path)
            changed += 1
        return changed

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
        if len(files) <= 1:
            return 0
        tables = [pq.read_table(f, filesystem=self.fs) for f in files]
        table = pa.concat_tables(tables, promote_options="default")
        keys = [k for k in ("endpoint_id", "start", "timestamp") if k in table.column_names]
        table = table.sort_by([(k, "ascending") for k in keys])
        names = [f.rsplit("/", 1)[-1] for f in files]
        digest = hashlib.sha1("\n".join(names).encode()).hexdigest()[:16]
        table = table.replace_schema_metadata(
            {**(table.schema.metadata or {}), b"modelmon_sources": json.dumps(names).encode()}
        )
        self._write(f"{directory}/compacted-{digest}.parquet", table)
        for f in files:
            self.fs.delete_file(f)
        return len(files)

    # -- files --------------------------------------------------------------------------

    def _write(self, path: str, table: pa.Table, compression: str = "zstd") -> None:
        parent = path.rsplit("/", 1)[0]
        tmp = f"{parent}/.tmp-{uuid.uuid4().hex}.parquet"
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
            )

        if parent not in self._made_dirs:
            self._make_dir(parent)
        try:
            write()
        except FileNotFoundError:  # the directory went since (retention, purge): again
            self._make_dir(parent)
            write()
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
        if not isinstance(self.fs, pafs.LocalFileSystem):
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


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
