import json

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.config import Settings
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import AppOutput, ColumnBatch, ResultRecord, WindowMeta
from modelmon_daemon.storage.lmdb_store import LmdbStore
from modelmon_daemon.storage.parquet_store import WindowEvents
from tests.helpers import drift_output, make_batch, make_spec, stored_events

MAP = 64 * 1024**2


def settings_for(path):
    s = Settings()
    s.daemon.data_dir = str(path)
    s.storage.lmdb_map_size = MAP
    return s.to_dict()


def test_wire_roundtrip_keeps_every_column():
    b = make_batch([1.0, 2.0], [[1, np.nan], [3, 4]])
    b.outputs.append(np.array(["a", None], dtype=object))
    b.error_events = 1
    back = ColumnBatch.from_wire(b.to_wire())
    assert np.array_equal(back.features, b.features, equal_nan=True)
    assert back.outputs[1].tolist() == ["a", None]
    assert back.request_ids.tolist() == ["r0", "r1"] and back.error_events == 1


def test_wal_append_assigns_increasing_seqs_and_survives_reopen(tmp_path):
    store = LmdbStore(tmp_path, MAP)
    spec = make_spec().to_dict()
    seqs = store.wal_append([("ep1", 0.0, make_batch([1.0], [[1, 2]]).to_wire())] * 2, [spec])
    assert seqs == [1, 2]
    store.close()
    store = LmdbStore(tmp_path, MAP)
    assert store.get_endpoint("ep1")["feature_names"] == ["x0", "x1"]
    assert [s for s, _, _ in store.wal_records("ep1")] == [1, 2]
    assert store.wal_append([("ep1", 0.0, make_batch([1.0], [[1, 2]]).to_wire())]) == [3]
    assert list(store.wal_records("ep")) == []  # prefix of another uid does not match


def _commit_args(store, seqs, late=False, start=0.0):
    meta = WindowMeta(
        "ep1", start, start + 60.0, seqs, rows=2, late=late, first_event=1.0, last_event=2.0
    )
    return meta


def test_writer_commits_a_window_exactly_once(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    spec = make_spec().to_dict()
    store = writer.store
    store.put_endpoint(spec)
    seqs = store.wal_append([("ep1", 0.0, make_batch([1.0, 2.0], [[1, 2], [3, 4]]).to_wire())])
    batch = make_batch([1.0, 2.0], [[1, 2], [3, 4]])
    meta = WindowMeta("ep1", 0.0, 60.0, seqs, rows=2, first_event=1.0, last_event=2.0)
    out = AppOutput(
        "histogram-data-drift",
        [
            ResultRecord(
                "histogram-data-drift",
                "general_drift",
                "result",
                0.8,
                0.0,
                60.0,
                ResultKind.data_drift,
                ResultStatus.detected,
                {"k": 1},
                2,
            )
        ],
        endpoint_updates={"drift_status": "detected"},
    )
    assert writer.commit_window(meta, batch, [out], spec, ["histogram-data-drift"]) is True
    assert writer.commit_window(meta, batch, [out], spec, ["histogram-data-drift"]) is False
    assert store.wal_size() == 0
    state = store.get_state("ep1")
    assert state["closed_through"] == 60.0 and state["events"] == 2
    assert state["drift_status"] == "detected"
    assert store.get_last_analyzed("ep1") == {"histogram-data-drift": 60.0}
    events = stored_events(tmp_path, "ep1")
    assert len(events) == 2 and list(events["x0"]) == [1, 3]
    rows = writer.parquet.read_results("ep1")
    assert [(r["name"], r["value"], r["status"], r["kind"]) for r in rows] == [
        ("general_drift", 0.8, 2, 0)
    ]
    assert rows[0]["start"] == "1970-01-01T00:00:00Z" and rows[0]["extra"] == {"k": 1}
    con = duckdb.connect()
    read = "read_parquet('{}/{}/**/*.parquet', hive_partitioning=true)"
    n = con.execute(f"select count(*) from {read.format(tmp_path, 'results')}").fetchone()
    assert n == (1,)
    n = con.execute(
        f"select count(*), min(endpoint_id) from {read.format(tmp_path, 'events')}"
    ).fetchone()
    assert n == (2, "ep1")


def test_files_of_a_commit_that_never_happened_are_removed_on_start(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    spec = make_spec().to_dict()
    batch = make_batch([1.0], [[1, 2]])
    meta = WindowMeta("ep1", 0.0, 60.0, [1], rows=1)
    (file,) = writer.parquet.events_files(
        [WindowEvents(meta, batch, spec["feature_names"], ["output"])]
    )
    writer.store.add_pending([file.path])
    writer.parquet.write_events(file)
    path = file.path
    assert pq.read_table(path).num_rows == 1
    writer.store.close()
    writer = WriterActor(settings_for(tmp_path))  # as after a crash between write and commit
    assert not __import__("os").path.exists(path)
    assert writer.store.pending_files() == []


def test_late_batch_counts_once_and_does_not_move_frontier(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    spec = make_spec().to_dict()
    store = writer.store
    seqs = store.wal_append([("ep1", 0.0, make_batch([1.0], [[1, 2]]).to_wire())], [spec])
    meta = WindowMeta("ep1", 0.0, 60.0, seqs, rows=1, late=True, first_event=1.0, last_event=1.0)
    batch = make_batch([1.0], [[1, 2]])
    assert writer.commit_window(meta, batch, [], spec, ["a"])
    assert not writer.commit_window(meta, batch, [], spec, ["a"])
    state = store.get_state("ep1")
    assert state["late_events"] == 1 and state["closed_through"] is None
    assert len(list((tmp_path / "events").rglob("*.parquet"))) == 1
    assert stored_events(tmp_path, "ep1")["request_id"].tolist() == ["r0"]  # stored once


def test_window_across_an_hour_is_split_by_hour(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    spec = make_spec().to_dict()
    batch = make_batch([3599.0, 3601.0], [[1, 2], [3, 4]])
    meta = WindowMeta("ep1", 3540.0, 3660.0, [], rows=2)
    writer.commit_window(meta, batch, [], spec, [])
    hours = sorted(p.parent.name for p in (tmp_path / "events").rglob("*.parquet"))
    assert hours == ["hour=00", "hour=01"]


def test_a_drift_result_queues_one_notification_per_channel_exactly_once(tmp_path):
    from modelmon_daemon.alerts.model import parse_alert

    writer = WriterActor(settings_for(tmp_path))
    store = writer.store
    store.put_alert(
        parse_alert(
            {
                "name": "drift",
                "entities": {"kind": "model-endpoint-result", "ids": ["ep1"]},
                "trigger": {"events": ["data-drift-detected"]},
                "notifications": [
                    {"kind": "slack", "webhook_url": "http://127.0.0.1:9/x"},
                    {"kind": "command", "argv": ["true"]},
                ],
            }
        )
    )
    spec = make_spec().to_dict()
    store.put_endpoint(spec)

    def window(start, status):
        seqs = store.wal_append([("ep1", start, make_batch([start + 1], [[1, 2]]).to_wire())])
        meta = WindowMeta("ep1", start, start + 60.0, seqs, rows=1)
        out = AppOutput(
            "histogram-data-drift",
            [
                ResultRecord(
                    "histogram-data-drift",
                    "general_drift",
                    "result",
                    0.9,
                    start,
                    start + 60.0,
                    ResultKind.data_drift,
                    status,
                    {},
                    1,
                )
            ],
        )
        return meta, out

    meta, out = window(0.0, ResultStatus.detected)
    batch = make_batch([1.0], [[1, 2]])
    assert writer.commit_window(meta, batch, [out], spec, ["histogram-data-drift"])
    assert not writer.commit_window(meta, batch, [out], spec, ["histogram-data-drift"])
    queued = store.outbox()
    assert sorted(e["channel"]["kind"] for e in queued) == ["command", "slack"]
    assert "Data drift detected on endpoint ep1" in queued[0]["text"]
    meta, out = window(60.0, ResultStatus.detected)  # still active: deduplicated
    writer.commit_window(meta, batch, [out], spec, ["histogram-data-drift"])
    assert len(store.outbox()) == 2
    store.close()
    reopened = LmdbStore(tmp_path, MAP)  # state survives a restart
    assert reopened.alert_states("drift")["ep1"]["active"]  # per (alert, endpoint)
    assert [h["action"] for h in reopened.alert_history("drift")] == ["activated", "deduplicated"]


def _commit_drift_results(writer, values):
    """One window per value (endpoints ep0, ep1, ...), committed in one tick."""
    batches, items = [], []
    for i, value in enumerate(values):
        uid = f"ep{i}"
        writer.store.put_endpoint(make_spec(uid).to_dict())
        meta = WindowMeta(uid, 0.0, 60.0, [], rows=1)
        batches.append(make_batch([1.0], [[1, 2]]))
        items.append((0, i, meta, [drift_output(meta, value)]))
    return writer.commit_tick(items, [], ["histogram-data-drift"], [batches])[0]


def test_a_tick_writes_one_results_file_that_every_reader_can_split(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    assert _commit_drift_results(writer, [0.1 * i for i in range(3)]) == [True] * 3
    files = list((tmp_path / "results").rglob("*.parquet"))
    assert len(files) == 1 and files[0].parent.name == "date=1970-01-01"
    table = pq.read_table(files[0])
    assert table.column("endpoint_id").to_pylist() == ["ep0", "ep1", "ep2"]  # sorted
    for i in range(3):
        (row,) = writer.parquet.read_results(f"ep{i}")
        assert row["value"] == 0.1 * i
    frame = pd.read_parquet(tmp_path / "results", filters=[("endpoint_id", "==", "ep1")])
    assert frame["value"].tolist() == [0.1]
    found = duckdb.sql(
        f"select endpoint_id, value from read_parquet('{tmp_path}/results/**/*.parquet', "
        "hive_partitioning=true) where endpoint_id = 'ep2'"
    ).fetchall()
    assert found == [("ep2", 0.2)]


def test_results_of_the_per_endpoint_layout_are_moved_once(tmp_path):
    from modelmon_daemon.storage.parquet_store import results_table

    old = tmp_path / "results" / "endpoint_id=old" / "date=1970-01-01"
    old.mkdir(parents=True)
    meta = WindowMeta("old", 0.0, 60.0, [], rows=1)
    legacy = results_table(drift_output(meta, 0.5).results, "p").drop(["endpoint_id"])
    pq.write_table(legacy, old / "w0.parquet")
    writer = WriterActor(settings_for(tmp_path))
    assert not (tmp_path / "results" / "endpoint_id=old").exists()
    (row,) = writer.parquet.read_results("old")
    assert row["value"] == 0.5 and row["full_name"] == "p.histogram-data-drift.result.general_drift"
    assert writer.parquet.migrate_results() == 0


def _statistics_of(path) -> set[str]:
    """The columns of a Parquet file's first row group that carry min/max statistics."""
    group = pq.ParquetFile(path).metadata.row_group(0)
    return {
        group.column(i).path_in_schema
        for i in range(group.num_columns)
        if group.column(i).is_stats_set and group.column(i).statistics.has_min_max
    }


def test_compaction_merges_past_partitions_once_and_retention_expires_them(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    day = 86400.0
    writer.parquet.sync()  # the data dir's file system flushed in one call
    for i in range(3):  # three ticks of two endpoints, all on day 1 (1970-01-02)
        for e in range(2):
            uid = f"ep{e}"
            writer.store.put_endpoint(make_spec(uid).to_dict())
            start = day + 60.0 * i
            meta = WindowMeta(uid, start, start + 60.0, [], rows=1)
            batch = make_batch([start + 1.0], [[1, 2]])
            writer.commit_tick([(0, 0, meta, [drift_output(meta, 0.1 * i)])], [], ["h"], [[batch]])
    results_dir = tmp_path / "results" / "date=1970-01-02"
    assert len(list(results_dir.glob("*.parquet"))) == 6
    hour = tmp_path / "events" / "date=1970-01-02" / "hour=00"
    fresh = next(hour.glob("t*.parquet"))
    assert pq.ParquetFile(fresh).metadata.row_group(0).column(0).compression == "LZ4"
    assert _statistics_of(fresh) == {"endpoint_id", "timestamp", "request_id"}
    before = {uid: writer.parquet.read_results(uid) for uid in ("ep0", "ep1")}
    rows_before = {uid: writer.parquet.read_events(uid)[0] for uid in ("ep0", "ep1")}
    done = writer.maintain(now=3 * day)  # day 1 is in the past now
    assert done["compacted"] == 6 + 6  # results: 6 files; events: 6 (one per commit)
    (merged,) = results_dir.glob("*.parquet")
    assert merged.name.startswith("compacted-")
    assert pq.read_table(merged).column("endpoint_id").to_pylist() == ["ep0"] * 3 + ["ep1"] * 3
    for uid in ("ep0", "ep1"):
        assert writer.parquet.read_results(uid) == before[uid]
        assert writer.parquet.read_events(uid)[0].equals(rows_before[uid])
        assert len(rows_before[uid]) == 3
    assert [p.name[:10] for p in hour.glob("*.parquet")] == ["compacted-"]
    (compacted,) = hour.glob("*.parquet")
    ids = pq.read_table(compacted).column("endpoint_id").to_pylist()
    assert ids == ["ep0"] * 3 + ["ep1"] * 3
    # the tick writes lz4 (fast); compaction re-encodes with zstd (small)
    assert pq.ParquetFile(compacted).metadata.row_group(0).column(0).compression == "ZSTD"
    assert _statistics_of(compacted) == {"endpoint_id", "timestamp", "request_id"}
    # results files keep every column's statistics
    assert "value" in _statistics_of(merged)
    # an interrupted run (merged file written, a source left behind) is finished, not doubled
    source = pq.read_table(merged)
    pq.write_table(source.slice(0, 1), results_dir / "r86400-leftover.parquet")
    names = json.loads(source.schema.metadata[b"modelmon_sources"])
    (results_dir / "r86400-leftover.parquet").rename(results_dir / names[0])
    assert writer.maintain(now=3 * day)["compacted"] == 0
    assert writer.parquet.read_results("ep0") == before["ep0"]
    # retention: a day older than it goes, with its events
    writer.settings.storage.retention = day
    assert writer.maintain(now=3 * day)["expired"] == 2  # the results day, the events day
    assert writer.parquet.read_results("ep0") == []
    assert not (tmp_path / "events" / "date=1970-01-02").exists()


def test_deleting_an_endpoint_forgets_its_state_and_uncommitted_rows(tmp_path):
    store = LmdbStore(tmp_path, MAP)
    for uid in ("gone", "kept"):
        store.put_endpoint(make_spec(uid).to_dict())
        store.wal_append([(uid, 0.0, make_batch([1.0, 2.0], [[1, 2], [3, 4]]).to_wire())])
        store.put_route(uid, f"stream:{uid}")
    store.log_labels("gone", [("r1", 1)], 0.0)
    assert store.wal_rows() == 4
    assert store.delete_endpoint("gone") == 2
    assert store.get_endpoint("gone") is None and "gone" not in store.routes()
    assert store.wal_records("gone") == [] and len(store.wal_records("kept")) == 1
    assert store.wal_rows() == 2 and not store.has_labels("gone")
    assert store.get_endpoint("kept") is not None


def test_purging_an_endpoint_rewrites_shared_files_and_its_directory_comes_back(tmp_path):
    """Purge drops one endpoint's rows from files it shares; directories are remembered as
    existing, and one removed meanwhile is made again."""
    from modelmon_daemon.storage.parquet_store import ParquetStore

    store = ParquetStore(str(tmp_path))

    def write(*uids):
        windows = [
            WindowEvents(
                WindowMeta(u, 0.0, 60.0, [], rows=1),
                make_batch([1.0], [[1, 2]]),
                ["a", "b"],
                ["output"],
            )
            for u in uids
        ]
        for file in store.events_files(windows):
            store.write_events(file)

    write("ep", "other")
    assert len(list((tmp_path / "events").rglob("*.parquet"))) == 1  # one shared file
    assert store.purge("ep") == 1
    assert store.read_events("ep")[0].num_rows == 0
    assert store.read_events("other")[0].column("a").to_pylist() == [1.0]
    assert store.purge("nobody") == 0
    assert store.purge("other") == 1
    assert not list((tmp_path / "events").rglob("*.parquet"))
    __import__("shutil").rmtree(tmp_path / "events")
    write("ep")
    frame = stored_events(tmp_path, "ep")
    assert frame["a"].tolist() == [1.0] and frame["b"].tolist() == [2.0]


def test_endpoints_that_differ_in_columns_get_a_file_each_and_read_only_theirs(tmp_path):
    from modelmon_daemon.storage.parquet_store import ParquetStore

    store = ParquetStore(str(tmp_path))
    hour = 3600.0 * 30
    windows = [
        WindowEvents(
            WindowMeta(uid, hour, hour + 60.0, [i], rows=2),
            make_batch([hour + 1, hour + 2], [[i, 2], [3, i]], rids=[f"{uid}-0", f"{uid}-1"]),
            names,
            ["output"],
        )
        for i, (uid, names) in enumerate([("b", ["x", "y"]), ("a", ["x", "y"]), ("c", ["p", "q"])])
    ]
    # a window across an hour boundary is split between the hours' files
    windows.append(
        WindowEvents(
            WindowMeta("d", hour - 30, hour + 30, [9], rows=2),
            make_batch([hour - 1, hour + 1], [[5, 6], [7, 8]]),
            ["x", "y"],
            ["output"],
        )
    )
    files = store.events_files(windows)
    assert sorted((f.path.rsplit("/", 2)[-2], f.table.num_rows) for f in files) == [
        ("hour=05", 1),
        ("hour=06", 2),
        ("hour=06", 5),
    ]
    shared = next(f for f in files if f.table.num_rows == 5)
    assert shared.table.column("endpoint_id").to_pylist() == ["a", "a", "b", "b", "d"]
    assert shared.windows == [0, 1, 3]
    for file in files:
        store.write_events(file)
    assert store.read_events("c")[0].column_names == [
        "timestamp",
        "request_id",
        "latency_us",
        "error",
        "p",
        "q",
        "output",
    ]
    d, _ = store.read_events("d")
    assert d.column("x").to_pylist() == [5.0, 7.0]
    assert store.read_events("d", start=hour)[0].column("x").to_pylist() == [7.0]
    assert store.read_events("d", end=hour)[0].column("x").to_pylist() == [5.0]
    assert store.read_events("a", limit=1)[0].num_rows == 1 and store.read_events("a", limit=1)[1]
    # an outside reader: DuckDB over the whole tree
    assert stored_events(tmp_path, "a")["request_id"].tolist() == ["a-0", "a-1"]
    assert stored_events(tmp_path, "c")["p"].tolist() == [2.0, 3.0]
    # the same windows written again replace their files
    for file in store.events_files(windows):
        store.write_events(file)
    assert len(list((tmp_path / "events").rglob("*.parquet"))) == 3
    # compaction keeps one file per column layout
    for file in store.events_files(
        [
            WindowEvents(
                WindowMeta("a", hour + 60, hour + 120, [7], rows=1),
                make_batch([hour + 61], [[1, 1]]),
                ["x", "y"],
                ["output"],
            )
        ]
    ):
        store.write_events(file)
    folder = str(tmp_path / "events" / "date=1970-01-02" / "hour=06")
    assert store.compact(folder, set()) == 2
    assert len(list((tmp_path / "events" / "date=1970-01-02" / "hour=06").glob("*"))) == 2
    assert store.read_events("a")[0].num_rows == 3 and store.read_events("c")[0].num_rows == 2


def test_events_of_the_per_endpoint_layout_are_moved_once(tmp_path):
    old = tmp_path / "events" / "endpoint_id=old" / "date=1970-01-01" / "hour=00"
    old.mkdir(parents=True)
    frame = pd.DataFrame(
        {
            "timestamp": pd.to_datetime([1.0, 2.0], unit="s", utc=True),
            "request_id": ["r0", "r1"],
            "f": [1.0, 2.0],
        }
    )
    frame.to_parquet(old / "w0.parquet")
    (old / ".tmp-x").write_bytes(b"half")
    writer = WriterActor(settings_for(tmp_path))
    assert not (tmp_path / "events" / "endpoint_id=old").exists()
    table, _ = writer.parquet.read_events("old")
    assert table.column("f").to_pylist() == [1.0, 2.0]
    assert stored_events(tmp_path, "old")["request_id"].tolist() == ["r0", "r1"]
    assert writer.parquet.migrate_events() == 0


def test_a_large_tick_is_cut_into_files_at_window_boundaries(tmp_path, monkeypatch):
    from modelmon_daemon.storage import parquet_store
    from modelmon_daemon.storage.parquet_store import ParquetStore

    monkeypatch.setattr(parquet_store, "EVENTS_FILE_ROWS", 5)
    store = ParquetStore(str(tmp_path))
    windows = [
        WindowEvents(
            WindowMeta(f"ep{i}", 0.0, 60.0, [i], rows=3),
            make_batch([1.0, 2.0, 3.0], [[i, 0]] * 3, rids=[f"{i}-{k}" for k in range(3)]),
            ["a", "b"],
            ["output"],
        )
        for i in (3, 1, 2, 0)
    ]
    files = store.events_files(windows)
    # 3 rows a window, at most 5 a file: one window each (a window is never cut)
    assert [f.table.column("endpoint_id").to_pylist() for f in files] == [
        [f"ep{i}"] * 3 for i in range(4)
    ]
    assert [f.windows for f in files] == [[3], [1], [2], [0]]
    assert len({f.path for f in files}) == 4
    for file in files:
        store.write_events(file)
    for i in range(4):
        table, _ = store.read_events(f"ep{i}")
        assert table.column("request_id").to_pylist() == [f"{i}-{k}" for k in range(3)]


def test_a_foreign_or_broken_file_among_the_events_never_breaks_a_read(tmp_path):
    from modelmon_daemon.storage.parquet_store import ParquetStore

    store = ParquetStore(str(tmp_path))
    window = WindowEvents(
        WindowMeta("ep", 0.0, 60.0, [1], rows=1), make_batch([1.0], [[1, 2]]), ["a", "b"], ["o"]
    )
    for file in store.events_files([window]):
        store.write_events(file)
    hour = tmp_path / "events" / "date=1970-01-01" / "hour=00"
    (hour / "garbage.parquet").write_bytes(b"not parquet at all")
    pq.write_table(pa.table({"x": [1.0]}), hour / "foreign.parquet")  # no endpoint_id
    table, _ = store.read_events("ep")
    assert table.column("a").to_pylist() == [1.0]
    assert store.compact(str(hour), set()) == 0  # ours is alone in its layout; no raise
    assert store.purge("ep") == 1 and store.read_events("ep")[0].num_rows == 0
    assert (hour / "garbage.parquet").exists() and (hour / "foreign.parquet").exists()


def test_a_foreign_or_broken_file_among_the_results_never_breaks_a_read(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    assert _commit_drift_results(writer, [0.1, 0.2]) == [True] * 2
    day = tmp_path / "results" / "date=1970-01-01"
    (ours,) = day.glob("*.parquet")
    (day / "garbage.parquet").write_bytes(b"not parquet at all")
    (day / "cut.parquet").write_bytes(ours.read_bytes()[:200])  # a damaged copy
    pq.write_table(pa.table({"endpoint_id": ["ep0"], "value": ["text"]}), day / "other.parquet")
    # one of ours, edited: an extra that is not a JSON object, a row without its window
    edited = pq.read_table(ours).slice(0, 1)
    edited = edited.set_column(
        edited.schema.get_field_index("extra"), "extra", pa.array(["{not json"])
    )
    pq.write_table(edited, day / "edited.parquet")
    nulls = edited.set_column(
        edited.schema.get_field_index("start"),
        "start",
        pa.nulls(1, edited.schema.field("start").type),
    )
    pq.write_table(nulls, day / "no-start.parquet")
    rows = writer.parquet.read_results("ep0")
    assert [r["value"] for r in rows] == [0.1, 0.1]  # ours, and the edited copy of it
    assert sorted(r["extra"] for r in rows if r["extra"]) == [{"unreadable": "{not json"}]
    assert [r["value"] for r in writer.parquet.read_results("ep1")] == [0.2]


def _logged_windows(writer, n, rows=3):
    """n endpoints, one logged window each: (metas, items) as the controller sends them."""
    metas, items = [], []
    for i in range(n):
        uid = f"ep{i}"
        spec = make_spec(uid).to_dict()
        batch = make_batch(np.linspace(1.0, 50.0, rows), np.full((rows, 2), float(i)))
        (seq,) = writer.store.wal_append([(uid, 0.0, batch.to_wire())], [spec])
        meta = WindowMeta(uid, 0.0, 60.0, [seq], rows=rows, first_event=1.0, last_event=50.0)
        metas.append(meta)
        items.append((0, i, meta, [drift_output(meta, 0.1)]))
    return metas, items


def _events_files(path):
    return sorted(p.name for p in (path / "events").rglob("*.parquet"))


def test_events_staged_while_applications_run_are_the_ones_committed(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    metas, items = _logged_windows(writer, 3)
    assert writer.stage_events(7, metas) == 1  # one shared file for the three windows
    staged = _events_files(tmp_path)
    assert len(writer.store.pending_files()) == 1  # counts only once committed
    status, _ = writer.commit_tick(items, [], ["histogram-data-drift"], None, tick=7)
    assert status == [True] * 3
    assert _events_files(tmp_path) == staged  # no second copy written
    assert writer.store.pending_files() == []
    for i in range(3):
        assert stored_events(tmp_path, f"ep{i}")["x0"].tolist() == [float(i)] * 3


def test_staged_events_that_do_not_match_the_commit_are_deleted(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    metas, items = _logged_windows(writer, 3)
    writer.stage_events(1, metas)
    staged = _events_files(tmp_path)
    # the tick commits only two of the staged windows: the shared file must not count
    status, _ = writer.commit_tick(items[:2], [], ["histogram-data-drift"], None, tick=1)
    assert status == [True, True]
    assert staged[0] not in _events_files(tmp_path)
    assert stored_events(tmp_path, "ep2").empty  # its rows are still only in the log
    assert len(stored_events(tmp_path, "ep0")) == 3
    assert writer.store.pending_files() == []
    # staged for another tick: dropped, the commit writes its own
    writer.stage_events(2, metas[2:])
    status, _ = writer.commit_tick(items[2:], [], ["histogram-data-drift"], None, tick=3)
    assert status == [True]
    assert len(stored_events(tmp_path, "ep2")) == 3
    assert len(_events_files(tmp_path)) == 2 and writer.store.pending_files() == []


def test_staged_events_of_a_tick_that_never_committed_are_removed_on_restart(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    metas, _ = _logged_windows(writer, 2)
    writer.stage_events(1, metas)
    assert _events_files(tmp_path)
    writer.store.close()
    WriterActor(settings_for(tmp_path))  # as after a crash between staging and commit
    assert _events_files(tmp_path) == []


def test_endpoint_versions_leave_out_the_records_a_reader_has(tmp_path):
    store = LmdbStore(tmp_path, MAP)
    store.put_endpoint(make_spec("a").to_dict())
    store.put_endpoint(make_spec("b").to_dict())
    (va, raw_a), (vb, _), gone = store.get_endpoints_changed(["a", "b", "zz"], [None, None, None])
    assert gone is None and raw_a == store.get_endpoint_raw("a") and va != vb
    assert store.get_endpoints_changed(["a", "b"], [va, vb]) == [(va, None), (vb, None)]
    changed = make_spec("a").to_dict() | {"feature_names": ["x0", "x1", "x2"]}
    store.put_endpoint(changed)  # re-registered: a new version, and its record again
    ((new, raw),) = store.get_endpoints_changed(["a"], [va])
    assert new != va and raw == store.get_endpoint_raw("a")


def _failing_output(meta):
    return AppOutput("broken", failure="ZeroDivisionError: division by zero")


def _results_and_failures(writer, n):
    out = []
    for i in range(n):
        rows = writer.parquet.read_results(f"ep{i}")
        out.append(sorted((r["application"], r["name"], r["value"]) for r in rows))
        out.append(sorted(f["application"] for f in writer.store.app_failures(f"ep{i}")))
    return out


def test_outputs_made_ready_while_others_compute_commit_as_the_outputs_themselves(tmp_path):
    """The commit of outputs staged by stage_outputs (and not sent again) stores the
    same results, failures and alerts' inputs as the commit given the outputs."""
    outcomes = []
    for name, staged in (("given", False), ("staged", True)):
        writer = WriterActor(settings_for(tmp_path / name))
        metas, _ = _logged_windows(writer, 3)
        chunk = [[drift_output(m, 0.1 * (i + 1)), _failing_output(m)] for i, m in enumerate(metas)]
        items = [(0, i, m, (0, i)) for i, m in enumerate(metas)]
        if staged:
            assert writer.stage_outputs(5, metas, chunk) is True
            status, summaries = writer.commit_tick(
                items, [], ["histogram-data-drift", "broken"], None, None, tick=5
            )
        else:
            status, summaries = writer.commit_tick(
                items, [], ["histogram-data-drift", "broken"], None, chunk, tick=5
            )
        assert status == [True] * 3
        assert summaries[0] == (1, ["ep0/broken: ZeroDivisionError: division by zero"])
        outcomes.append(_results_and_failures(writer, 3))
    assert outcomes[0] == outcomes[1]
    assert outcomes[0][0] == [("histogram-data-drift", "general_drift", 0.1)]


def test_outputs_left_out_of_the_commit_but_never_made_ready_are_not_committed(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    metas, _ = _logged_windows(writer, 2)
    chunk = [[drift_output(m, 0.2)] for m in metas]
    writer.stage_outputs(1, metas[:1], chunk[:1])  # only the first window made ready
    items = [(0, 0, metas[0], (0, 0)), (0, 1, metas[1], (1, 0))]
    status, _ = writer.commit_tick(items, [], ["histogram-data-drift"], None, None, None, tick=1)
    assert status == [True, None]  # the second is done again next tick, not lost
    assert writer.parquet.read_results("ep1") == []
    status, _ = writer.commit_tick(
        [(0, 1, metas[1], (0, 0))], [], ["histogram-data-drift"], None, chunk[1:], tick=2
    )
    assert status == [True] and len(writer.parquet.read_results("ep1")) == 1


def test_outputs_made_ready_for_another_tick_are_not_used(tmp_path):
    writer = WriterActor(settings_for(tmp_path))
    metas, _ = _logged_windows(writer, 1)
    writer.stage_outputs(1, metas, [[drift_output(metas[0], 0.9)]])
    fresh = [[drift_output(metas[0], 0.3)]]
    status, _ = writer.commit_tick(
        [(0, 0, metas[0], (0, 0))], [], ["histogram-data-drift"], None, fresh, tick=2
    )
    assert status == [True]
    assert [r["value"] for r in writer.parquet.read_results("ep0")] == [0.3]


def test_features_named_like_fixed_columns_or_partition_keys_keep_every_reader_working(
    tmp_path,
):
    """A feature or output named like a column every events file has, or like the
    tree's partition keys (date, hour), is stored as name + "_" (more while taken):
    two columns of one name, or a `date` column inside a `date=` folder, broke
    pyarrow, pandas and DuckDB on the whole tree."""
    from modelmon_daemon.storage.parquet_store import ParquetStore, event_column_names

    names = ["endpoint_id", "timestamp_", "timestamp", "date", "hour", "error", "x"]
    stored = event_column_names([*names, "request_id"])
    assert stored == [
        "endpoint_id_",
        "timestamp_",
        "timestamp__",
        "date_",
        "hour_",
        "error_",
        "x",
        "request_id_",
    ]
    assert event_column_names(["a", "output"]) == ["a", "output"]  # others as they are
    store = ParquetStore(str(tmp_path))
    hour = 3600.0 * 30
    rows = [[float(10 * r + j) for j in range(len(names))] for r in range(2)]
    window = WindowEvents(
        WindowMeta("odd", hour, hour + 60.0, [1], rows=2),
        make_batch([hour + 1, hour + 2], rows, outputs=[0.25, 0.75], rids=["q0", "q1"]),
        names,
        ["request_id"],
    )
    for file in store.events_files([window]):
        store.write_events(file)
    table, _ = store.read_events("odd")
    assert table.column_names[4:] == stored
    for j, column in enumerate(stored[:-1]):
        assert table.column(column).to_pylist() == [rows[0][j], rows[1][j]], column
    assert table.column("request_id").to_pylist() == ["q0", "q1"]
    assert table.column("request_id_").to_pylist() == [0.25, 0.75]
    # outside readers of the whole tree, partition keys included
    frame = pd.read_parquet(tmp_path / "events")
    assert frame["endpoint_id"].tolist() == ["odd", "odd"]
    assert frame["date"].astype(str).tolist() == ["1970-01-02"] * 2
    assert frame["date_"].tolist() == [3.0, 13.0]
    assert stored_events(tmp_path, "odd")["hour_"].tolist() == [4.0, 14.0]
    single = next((tmp_path / "events").rglob("*.parquet"))
    assert pq.read_table(single).column_names[0] == "endpoint_id"
