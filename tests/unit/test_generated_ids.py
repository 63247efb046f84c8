"""Request ids the daemon generates stay runs of (prefix, first row, count) through
parsing, the log record, windows joined from many records and the hand-off to actors,
and read as the same strings everywhere."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from modelmon_daemon.core.records import ColumnBatch, GeneratedIds, IdRun
from modelmon_daemon.ingest.events import parse_native_events
from modelmon_daemon.storage.parquet_store import events_table, request_id_column
from tests.helpers import make_batch

NOW = 1_700_000_000.0


def generated(n: int) -> ColumnBatch:
    payload = {"inputs": [[float(i), 1.0] for i in range(n)], "outputs": [0.5] * n}
    batch = parse_native_events(payload, ["a", "b"], 1, NOW)
    assert isinstance(batch.request_ids, GeneratedIds)
    return batch


def prefix_of(batch: ColumnBatch) -> str:
    assert isinstance(batch.request_ids, GeneratedIds) and len(batch.request_ids.runs) == 1
    return batch.request_ids.runs[0].prefix


def test_generated_ids_read_as_prefix_and_row_number():
    batch = generated(5)
    prefix = prefix_of(batch)
    expected = [f"{prefix}{i}" for i in range(5)]
    assert batch.request_ids.tolist() == expected
    assert np.asarray(batch.request_ids).tolist() == expected
    assert np.asarray(batch.request_ids).dtype == object
    assert batch.request_ids[3] == expected[3]
    assert batch.request_ids[np.array([4, 0])].tolist() == [expected[4], expected[0]]
    assert len(batch.request_ids) == 5


def test_the_log_record_carries_the_pair_not_the_strings():
    batch = generated(1000)
    wire = batch.to_wire()
    assert "r" not in wire and wire["rg"] == [prefix_of(batch), 1000]
    back = ColumnBatch.from_wire(wire)
    assert back.request_ids == batch.request_ids  # still the pair
    assert back.request_ids.tolist() == batch.request_ids.tolist()
    # what a stream actor receives is small: the ids are not pickled as 1000 strings
    assert len(pickle.dumps(batch.request_ids)) < 200
    assert len(pickle.dumps(np.asarray(batch.request_ids))) > 30_000


def test_a_record_whose_id_count_differs_from_its_rows_is_refused():
    wire = generated(4).to_wire()
    wire["rg"][1] = 5
    with pytest.raises(ValueError, match="5 rows in a record of 4"):
        ColumnBatch.from_wire(wire)


def test_records_written_with_string_ids_read_as_before():
    b = make_batch([1.0, 2.0], [[1, 2], [3, 4]])
    wire = b.to_wire()
    assert wire["r"] == ["r0", "r1"] and "rg" not in wire
    assert ColumnBatch.from_wire(wire).request_ids.tolist() == ["r0", "r1"]


def test_window_batches_mix_generated_and_sent_ids():
    sent = make_batch([1.0, 2.0], [[1, 2], [3, 4]], rids=["x", "y"])
    gen = generated(3)
    both = ColumnBatch.concat([sent, gen, generated(2)], 2, 1)
    last = both.request_ids.tolist()[5:]
    assert both.request_ids.tolist() == ["x", "y", *gen.request_ids.tolist(), *last]
    assert len(set(both.request_ids.tolist())) == 7 and last[1].endswith("-1")
    assert both.request_ids.dtype == object
    taken = gen.take(np.array([True, False, True]))
    assert taken.request_ids.tolist() == [gen.request_ids.tolist()[0], gen.request_ids.tolist()[2]]


def test_events_file_holds_the_generated_strings():
    batch = generated(70_000)  # past the cached row numbers
    table = events_table(batch, ["a", "b"], ["output"])
    ids = table.column("request_id")
    assert ids.type == pa.string()
    prefix = prefix_of(batch)
    assert ids[0].as_py() == f"{prefix}0" and ids[69_999].as_py() == f"{prefix}69999"
    assert len(set(ids.to_pylist())) == 70_000


def test_arrow_makes_the_same_strings_as_tolist():
    for n in (0, 1, 9, 10, 1001, 70_000):
        ids = generated(n).request_ids if n else GeneratedIds.new("p-", 0)
        column = request_id_column(ids)
        assert column.type == pa.string() and column.null_count == 0
        assert column.to_pylist() == ids.tolist()
    sent = np.array(["x", None, "z"], dtype=object)
    assert request_id_column(sent).to_pylist() == ["x", None, "z"]


def test_a_shared_events_file_holds_each_windows_ids_in_order(tmp_path):
    from modelmon_daemon.core.records import WindowMeta
    from modelmon_daemon.storage.parquet_store import ParquetStore, WindowEvents

    start = NOW - NOW % 3600
    gen_a, gen_c = generated(3), generated(1200)
    sent = make_batch([NOW, NOW], [[1, 2], [3, 4]], rids=["x", "y"])
    mixed = ColumnBatch.concat([generated(2), sent], 2, 1)  # ids materialized: an array
    for b in (gen_a, gen_c, mixed):
        b.timestamps[:] = start + 1
    windows = [
        WindowEvents(
            WindowMeta(uid, start, start + 60, [i], rows=len(b)), b, ["a", "b"], ["output"]
        )
        for i, (uid, b) in enumerate([("c", gen_c), ("a", gen_a), ("b", mixed)])
    ]
    (file,) = ParquetStore(str(tmp_path)).events_files(windows)
    expected = [
        *gen_a.request_ids.tolist(),
        *mixed.request_ids.tolist(),
        *gen_c.request_ids.tolist(),
    ]
    assert file.table.column("request_id").to_pylist() == expected
    assert file.table.column("endpoint_id").to_pylist() == ["a"] * 3 + ["b"] * 4 + ["c"] * 1200
    assert file.table.column("a").to_pylist()[:3] == gen_a.features[:, 0].tolist()


async def test_a_group_commit_merges_a_windows_requests_keeping_generated_ids_as_runs(tmp_path):
    """Requests committed together are merged per (endpoint, window) in their order of
    arrival; generated ids stay runs in the merged record (not strings), and only a
    window mixing sent and generated ids is written as strings."""
    import asyncio

    from modelmon_daemon.core.records import from_log_value
    from modelmon_daemon.storage.lmdb_store import LmdbStore
    from modelmon_daemon.storage.wal import ThreadedCommitLog

    store = LmdbStore(tmp_path, 64 << 20)
    forwarded: list[tuple[str, int, float, bytes]] = []

    async def forward(records):
        forwarded.extend(records)

    log = ThreadedCommitLog(store.wal_append_values, forward)
    await log.start()
    gen = [generated(1), generated(64), generated(63), generated(500)]
    sent = make_batch([NOW, NOW], [[1, 2], [3, 4]])
    mixed = [generated(3), make_batch([NOW], [[5, 6]], rids=["s"]), generated(2)]
    arrived = [("ep", gen[0]), ("ep", gen[1]), ("other", sent), ("ep", gen[2])]
    arrived += [("mixed", mixed[0]), ("ep", gen[3]), ("mixed", mixed[1]), ("mixed", mixed[2])]
    try:
        # queued before the flusher runs: one commit for all the requests
        await asyncio.gather(*(log.append([(uid, NOW, b)], []) for uid, b in arrived))
    finally:
        await log.stop()
    assert log.commits == 1
    records = {uid: ColumnBatch.from_wire(from_log_value(v)[1]) for uid, _, _, v in forwarded}
    assert sorted(records) == ["ep", "mixed", "other"]
    ep = records["ep"]
    assert isinstance(ep.request_ids, GeneratedIds)
    assert ep.request_ids.runs == tuple(g.request_ids.runs[0] for g in gen)
    assert ep.request_ids.tolist() == [r for g in gen for r in g.request_ids.tolist()]
    np.testing.assert_array_equal(ep.features, np.concatenate([g.features for g in gen]))
    assert records["other"].request_ids.tolist() == ["r0", "r1"]
    assert not isinstance(records["mixed"].request_ids, GeneratedIds)
    assert records["mixed"].request_ids.tolist() == [
        r for b in mixed for r in b.request_ids.tolist()
    ]
    assert store.wal_rows() == sum(len(b) for _, b in arrived)
    store.close()


def test_a_window_joined_from_many_records_keeps_its_ids_as_runs():
    """What a stream actor sends the application actors for a window of 200 records: a
    few hundred values, not 20,000 strings; the same strings when read."""
    parts = [generated(100) for _ in range(200)]
    window = ColumnBatch.concat(parts, 2, 1)
    assert isinstance(window.request_ids, GeneratedIds) and len(window.request_ids.runs) == 200
    expected = [r for p in parts for r in p.request_ids.tolist()]
    assert window.request_ids.tolist() == expected
    assert request_id_column(window.request_ids).to_pylist() == expected
    assert len(pickle.dumps(window.request_ids)) < 200 * 80
    back = ColumnBatch.from_wire(window.to_wire())
    assert back.request_ids == window.request_ids
    assert "rg" not in window.to_wire() and len(window.to_wire()["rgs"]) == 200


def test_runs_are_sliced_taken_and_joined_as_the_strings_would_be():
    ids = GeneratedIds((IdRun("a-", 0, 5), IdRun("b-", 70_000, 3), IdRun("a-", 5, 4)))
    strings = ids.tolist()
    assert strings[4:7] == ["a-4", "b-70000", "b-70001"] and strings[-1] == "a-8"
    for lo in range(len(strings) + 1):
        for hi in range(lo, len(strings) + 1):
            part = ids.slice(lo, hi)
            assert part.tolist() == strings[lo:hi] and part.n == hi - lo
    mask = np.zeros(12, dtype=bool)
    mask[3:9] = True
    taken = ids.take(mask)  # consecutive rows: still runs
    assert isinstance(taken, GeneratedIds) and taken.tolist() == strings[3:9]
    assert isinstance(ids.take(np.array([2, 3, 4])), GeneratedIds)
    scattered = ids.take(np.array([0, 2, 11]))  # not consecutive: strings
    assert not isinstance(scattered, GeneratedIds)
    assert scattered.tolist() == [strings[0], strings[2], strings[11]]
    assert ids.take(np.zeros(12, dtype=bool)).tolist() == []
    # a run that continues the one before it is joined to it
    joined = GeneratedIds.join([ids.slice(0, 2), ids.slice(2, 5), ids.slice(5, 12)])
    assert joined == ids and joined.tolist() == strings
    # a batch split at a window's end keeps runs in both parts
    batch = generated(10)
    batch.timestamps[:] = np.r_[np.full(6, NOW), np.full(4, NOW + 60)]
    from modelmon_daemon.ingest.events import split_by_window

    (_, first), (_, second) = split_by_window(batch, 60.0)
    assert isinstance(second.request_ids, GeneratedIds)
    assert first.request_ids.tolist() + second.request_ids.tolist() == batch.request_ids.tolist()


def test_a_record_with_bad_runs_is_refused():
    wire = ColumnBatch.concat([generated(2), generated(3)], 2, 1).to_wire()
    bad_count = {**wire, "rgs": [[*wire["rgs"][0]], [wire["rgs"][1][0], 0, 4]]}
    with pytest.raises(ValueError, match="6 rows in a record of 5"):
        ColumnBatch.from_wire(bad_count)
    prefix = wire["rgs"][0][0]
    for run in (
        [prefix, -1, 2],
        [None, 0, 2],
        [prefix, "0", 2],
        [prefix, 0.5, 2],
        [prefix, 0],
        "x",
    ):
        malformed = {**wire, "rgs": [run, [*wire["rgs"][1]]]}
        with pytest.raises(ValueError, match="bad run"):
            ColumnBatch.from_wire(malformed)


def test_a_record_without_errors_carries_no_list_of_nils():
    clean = generated(1000)
    wire = clean.to_wire()
    assert "e" not in wire
    back = ColumnBatch.from_wire(wire)
    assert back.errors.dtype == object and back.errors.tolist() == [None] * 1000
    error = make_batch([NOW], [[1, 2]])
    error.errors[0] = "boom"
    failing = ColumnBatch.concat([generated(2), error], 2, 1)
    wire = failing.to_wire()
    assert wire["e"] == [None, None, "boom"]
    assert ColumnBatch.from_wire(wire).errors.tolist() == [None, None, "boom"]
    # records logged before (a list of nils) read the same
    old = {**clean.to_wire(), "e": [None] * 1000}
    assert ColumnBatch.from_wire(old).errors.tolist() == [None] * 1000


def test_many_windows_generated_ids_are_joined_in_one_call_as_the_same_strings():
    from modelmon_daemon.storage.parquet_store import request_ids_column

    windows = [generated(3), generated(1), generated(70_000), generated(2)]
    expected = [r for w in windows for r in w.request_ids.tolist()]
    joined = request_ids_column([w.request_ids for w in windows])
    assert joined.type == pa.string() and joined.to_pylist() == expected
    mixed = [*windows[:2], make_batch([NOW], [[1, 2]], rids=["sent"])]
    assert request_ids_column([w.request_ids for w in mixed]).to_pylist() == [
        *expected[:4],
        "sent",
    ]
    assert request_ids_column([]).to_pylist() == []
