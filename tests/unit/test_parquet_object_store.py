"""The Parquet tree on an object store (storage.parquet_uri = s3://…): the writer's
events and results, their read-back, compaction, retention, purge and the removal of
files of a commit that never happened, against a local S3-compatible server."""

import numpy as np
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.config import Settings
from modelmon_daemon.core.records import WindowMeta
from tests.helpers import drift_output, make_batch, make_spec
from tests.s3 import LocalS3, local_s3

BUCKET = "modelmon-unit"
DAY = 86400.0


@pytest.fixture(scope="module")
def s3():
    with local_s3() as server:
        server.make_bucket(BUCKET)
        yield server


@pytest.fixture
def prefix(request):
    return request.node.name.replace("[", "-").replace("]", "")


def _writer(tmp_path, s3: LocalS3, prefix: str) -> WriterActor:
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    s.storage.parquet_uri = s3.uri(BUCKET, prefix)
    return WriterActor(s.to_dict())


def _log_windows(writer: WriterActor, n: int, start: float = 0.0, rows: int = 3):
    """n endpoints with one logged window each, from `start`: (metas, items)."""
    metas, items = [], []
    for i in range(n):
        uid = f"ep{i}"
        spec = make_spec(uid).to_dict()
        batch = make_batch(np.linspace(start + 1, start + 50, rows), np.full((rows, 2), float(i)))
        (seq,) = writer.store.wal_append([(uid, start, batch.to_wire())], [spec])
        meta = WindowMeta(
            uid, start, start + 60.0, [seq], rows=rows, first_event=start + 1, last_event=start + 50
        )
        metas.append(meta)
        items.append((0, i, meta, [drift_output(meta, 0.1 * (i + 1))]))
    return metas, items


def _commit(writer: WriterActor, n: int, start: float, tick: int) -> None:
    metas, items = _log_windows(writer, n, start)
    writer.stage_events(tick, metas)
    status, _ = writer.commit_tick(items, [], ["histogram-data-drift"], None, tick=tick)
    assert status == [True] * n


def test_a_tick_lands_in_the_bucket_and_reads_back(tmp_path, s3, prefix):
    writer = _writer(tmp_path, s3, prefix)
    assert not writer.parquet.local
    _commit(writer, 3, 0.0, tick=1)
    keys = s3.keys(BUCKET)
    events = [k for k in keys if k.startswith(f"{prefix}/events/") and k.endswith(".parquet")]
    results = [k for k in keys if k.startswith(f"{prefix}/results/") and k.endswith(".parquet")]
    assert len(events) == 1 and "/date=1970-01-01/hour=00/t0-" in events[0]
    assert len(results) == 1 and "/date=1970-01-01/r0-" in results[0]
    assert not [k for k in keys if "/.tmp-" in k]  # written in place: no rename on S3
    # nothing of the Parquet tree in the local data dir: only LMDB and the like
    assert not list(tmp_path.rglob("*.parquet"))
    assert writer.store.wal_size() == 0 and writer.store.pending_files() == []
    for i in range(3):
        table, truncated = writer.parquet.read_events(f"ep{i}")
        assert not truncated and table.column("x0").to_pylist() == [float(i)] * 3
        (row,) = writer.parquet.read_results(f"ep{i}")
        assert row["value"] == pytest.approx(0.1 * (i + 1)) and row["status"] == 0
    # any pyarrow reader of the bucket splits them by endpoint_id
    fs = s3.filesystem()
    frame = (
        ds.dataset(f"{BUCKET}/{prefix}/results", filesystem=fs, partitioning="hive")
        .to_table(filter=ds.field("endpoint_id") == "ep1")
        .to_pylist()
    )
    assert [(r["name"], r["date"]) for r in frame] == [("general_drift", "1970-01-01")]


def test_compaction_retention_and_purge_work_on_the_bucket(tmp_path, s3, prefix):
    writer = _writer(tmp_path, s3, prefix)
    for tick in range(3):  # three ticks of two endpoints on day 1
        _commit(writer, 2, DAY + 60.0 * tick, tick=tick + 1)
    before = {u: writer.parquet.read_events(u)[0] for u in ("ep0", "ep1")}
    results = {u: writer.parquet.read_results(u) for u in ("ep0", "ep1")}
    assert len(before["ep0"]) == 9
    done = writer.maintain(now=3 * DAY)
    assert done["compacted"] == 3 + 3  # three events files, three results files
    keys = [k for k in s3.keys(BUCKET) if k.startswith(prefix + "/")]
    parquet = sorted(k.rsplit("/", 1)[1][:10] for k in keys if k.endswith(".parquet"))
    assert parquet == ["compacted-", "compacted-"]
    merged = next(k for k in keys if "/events/" in k and "compacted-" in k)
    ids = pq.read_table(f"{BUCKET}/{merged}", filesystem=s3.filesystem()).column("endpoint_id")
    assert ids.to_pylist() == ["ep0"] * 9 + ["ep1"] * 9
    for uid in ("ep0", "ep1"):
        assert writer.parquet.read_events(uid)[0].equals(before[uid])
        assert writer.parquet.read_results(uid) == results[uid]
    assert writer.parquet.purge("ep0") == 2  # the events file and the results file
    assert writer.parquet.read_events("ep0")[0].num_rows == 0
    assert writer.parquet.read_events("ep1")[0].equals(before["ep1"])
    writer.settings.storage.retention = DAY
    assert writer.maintain(now=3 * DAY)["expired"] == 2  # day 1 of results and of events
    assert writer.parquet.read_results("ep1") == []
    assert not [k for k in s3.keys(BUCKET) if k.startswith(prefix + "/") and ".parquet" in k]


def test_files_of_a_tick_that_never_committed_leave_the_bucket_on_restart(tmp_path, s3, prefix):
    writer = _writer(tmp_path, s3, prefix)
    metas, _ = _log_windows(writer, 2)
    assert writer.stage_events(1, metas) == 1
    assert [k for k in s3.keys(BUCKET) if k.startswith(f"{prefix}/events/")]
    writer.store.close()
    restarted = _writer(tmp_path, s3, prefix)  # as after a crash between staging and commit
    assert not [k for k in s3.keys(BUCKET) if k.startswith(f"{prefix}/events/")]
    assert restarted.store.pending_files() == []
    assert restarted.store.wal_size() == 2  # the rows are still in the log, to commit again


def test_evaluate_writes_its_results_into_the_bucket(tmp_path, s3, prefix):
    import pandas as pd

    from modelmon_daemon.evaluate import evaluate, write_results

    rng = np.random.default_rng(3)
    pd.DataFrame(rng.normal(size=(500, 2)), columns=["u", "v"]).to_parquet(tmp_path / "ref.pq")
    data = pd.DataFrame(rng.normal(loc=3.0, size=(200, 2)), columns=["u", "v"])
    data.to_parquet(tmp_path / "data.pq")
    result = evaluate(str(tmp_path / "data.pq"), str(tmp_path / "ref.pq"), Settings())
    paths = write_results(result, s3.uri(BUCKET, prefix))
    assert paths and all(p.startswith(f"{BUCKET}/{prefix}/results/date=") for p in paths)
    frame = (
        ds.dataset(f"{BUCKET}/{prefix}/results", filesystem=s3.filesystem(), partitioning="hive")
        .to_table(filter=ds.field("name") == "general_drift")
        .to_pylist()
    )
    (mine,) = [r for r in result.results if r.name == "general_drift"]
    assert [(r["endpoint_id"], r["value"], r["status"]) for r in frame] == [
        (result.uid, mine.value, 2)
    ]


def _register(path: str, entries: list[str], tmp_path):
    from modelmon_daemon.ingest.registration import build_spec

    body = {"uid": "r", "project": "p", "name": "m", "feature_names": ["u", "v"]}
    return build_spec({**body, "reference": {"path": path}}, 0.0, [tmp_path], 0.1, None, entries)


def test_a_reference_on_the_bucket_registers_as_the_same_file_on_disk(tmp_path, s3, prefix):
    import pandas as pd

    from modelmon_daemon.core.errors import ApiError
    from modelmon_daemon.storage import remote_files

    rng = np.random.default_rng(8)
    frame = pd.DataFrame(rng.normal(size=(300, 2)), columns=["u", "v"])
    frame.to_parquet(tmp_path / "ref.parquet")
    fs = s3.filesystem()
    with fs.open_output_stream(f"{BUCKET}/{prefix}/refs/ref.parquet") as out:  # same bytes
        out.write((tmp_path / "ref.parquet").read_bytes())
    with fs.open_output_stream(f"{BUCKET}/{prefix}/refs/bad.csv") as out:
        out.write(b"u,v\n1,2\n3,4,5\n")
    entry = s3.uri(BUCKET, f"{prefix}/refs")  # where references may be: the operator's
    uri = f"s3://{BUCKET}/{prefix}/refs/ref.parquet"  # what a client names
    local = _register(str(tmp_path / "ref.parquet"), [], tmp_path)
    remote = _register(uri, [entry], tmp_path)
    assert remote.feature_stats == local.feature_stats and remote.multivariate == local.multivariate
    kept = dict(remote_files.COPIES._kept)
    _register(uri, [entry], tmp_path)  # the same version: no second copy
    assert dict(remote_files.COPIES._kept) == kept

    def refused(path):
        with pytest.raises(ApiError) as err:
            _register(path, [entry], tmp_path)
        assert err.value.details["field"] == "reference.path"
        return err.value

    # outside the configured folder, or naming an endpoint, credentials or a way out: no
    # request is sent anywhere
    assert refused(f"s3://{BUCKET}/{prefix}/other/ref.parquet").status == 403
    assert refused(f"s3://{BUCKET}/{prefix}/refsx/ref.parquet").status == 403
    assert refused(f"s3://{BUCKET}/{prefix}/refs").status == 403
    assert refused(f"gs://{BUCKET}/{prefix}/refs/ref.parquet").status == 403
    for bad in (
        f"s3://{BUCKET}/{prefix}/refs/../ref.parquet",
        f"{uri}?endpoint_override=127.0.0.2:9",
        f"s3://key:secret@{BUCKET}/{prefix}/refs/ref.parquet",
        f"{uri}#x",
    ):
        assert refused(bad).status == 400, bad
    missing = refused(f"s3://{BUCKET}/{prefix}/refs/none.parquet")
    assert missing.status == 400 and missing.message.endswith("refs/none.parquet: no such file")
    csv = refused(f"s3://{BUCKET}/{prefix}/refs/bad.csv")  # named as given, with the line
    assert csv.message == (
        f"reference file s3://{BUCKET}/{prefix}/refs/bad.csv:3: 3 values where the header has 2"
    )
    assert csv.details["line"] == 3
