"""Request ids the daemon generates stay a (prefix, count) pair through parsing, the log
record and the hand-off to stream actors, and read as the same strings everywhere."""

from __future__ import annotations

import pickle

import numpy as np
import pyarrow as pa
import pytest

from modelmon_daemon.core.records import ColumnBatch, GeneratedIds
from modelmon_daemon.ingest.events import parse_native_events
from modelmon_daemon.storage.parquet_store import events_table, request_id_column
from tests.helpers import make_batch

NOW = 1_700_000_000.0


def generated(n: int) -> ColumnBatch:
    payload = {"inputs": [[float(i), 1.0] for i in range(n)], "outputs": [0.5] * n}
    batch = parse_native_events(payload, ["a", "b"], 1, NOW)
    assert isinstance(batch.request_ids, GeneratedIds)
    return batch


def test_generated_ids_read_as_prefix_and_row_number():
    batch = generated(5)
    prefix = batch.request_ids.prefix
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
    assert "r" not in wire and wire["rg"] == [batch.request_ids.prefix, 1000]
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
    prefix = batch.request_ids.prefix
    assert ids[0].as_py() == f"{prefix}0" and ids[69_999].as_py() == f"{prefix}69999"
    assert len(set(ids.to_pylist())) == 70_000


def test_arrow_makes_the_same_strings_as_tolist():
    for n in (0, 1, 9, 10, 1001, 70_000):
        ids = generated(n).request_ids if n else GeneratedIds("p-", 0)
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


async def test_a_group_commit_keeps_large_generated_id_batches_as_records_of_their_own(tmp_path):
    """Requests committed together are merged per (endpoint, window), except batches of
    many generated ids: merged, their ids would become strings in the log record. The
    window's rows keep their order of arrival."""
    import asyncio

    from modelmon_daemon.core.records import from_log_value
    from modelmon_daemon.storage.lmdb_store import LmdbStore
    from modelmon_daemon.storage.wal import MERGE_MAX_GENERATED_IDS, GroupCommitLog, store_append

    store = LmdbStore(tmp_path, 64 << 20)
    forwarded: list[tuple[str, int, float, bytes]] = []

    async def forward(records):
        forwarded.extend(records)

    log = GroupCommitLog(store_append(store, None), forward)
    await log.start()
    small0, large0, small1, large1 = (
        generated(1),
        generated(MERGE_MAX_GENERATED_IDS),
        generated(MERGE_MAX_GENERATED_IDS - 1),
        generated(500),
    )
    sent = make_batch([NOW, NOW], [[1, 2], [3, 4]])
    arrived = [small0, large0, small1, sent, large1]
    try:
        # queued before the flusher runs: one commit for all five requests
        await asyncio.gather(*(log.append([("ep", NOW, b)], []) for b in arrived))
    finally:
        await log.stop()
    assert log.commits == 1
    records = sorted(
        (seq, ColumnBatch.from_wire(from_log_value(v)[1])) for _, seq, _, v in forwarded
    )
    assert [seq for seq, *_ in store.wal_records("ep")] == [seq for seq, _ in records]
    batches = [b for _, b in records]
    # small0 alone (large0 follows it), large0, small1 + sent merged, large1
    big = MERGE_MAX_GENERATED_IDS
    assert [len(b) for b in batches] == [1, big, big + 1, 500]
    for got, original in ((batches[1], large0), (batches[3], large1)):
        assert got.request_ids == original.request_ids  # the pair, not the strings
        np.testing.assert_array_equal(got.features, original.features)
    assert not isinstance(batches[2].request_ids, GeneratedIds)
    in_log = [r for b in batches for r in b.request_ids.tolist()]
    assert in_log == [r for b in arrived for r in b.request_ids.tolist()]
    assert store.wal_rows() == sum(map(len, arrived))
    store.close()


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
