"""The controller's tick, driven in-process (no Ray): stream -> applications -> writer."""

import time

import numpy as np
import pytest

from modelmon_daemon.actors.controller import ControllerActor
from modelmon_daemon.config import Settings
from modelmon_daemon.ingest.events import split_by_window
from modelmon_daemon.storage.lmdb_store import LmdbStore
from tests.fakes import FakeRuntime
from tests.helpers import make_batch, make_spec

P = 60.0


@pytest.fixture
def env(tmp_path):
    return build_env(tmp_path)


def build_env(tmp_path, **stream):
    s = Settings()
    s.daemon.data_dir = str(tmp_path)
    s.storage.lmdb_map_size = 64 * 1024**2
    s.windows.base_period = P
    s.windows.allowed_lateness = 5.0
    s.stream.max_actors = 2
    for key, value in stream.items():
        setattr(s.stream, key, value)
    s.applications.user = [
        "tests.unit.failing_app:RowCountApplication",
        "tests.unit.failing_app:BrokenApplication",
    ]
    settings = s.to_dict()
    store = LmdbStore(tmp_path, s.storage.lmdb_map_size)
    runtime = FakeRuntime(settings, store)
    controller = ControllerActor(settings, runtime=runtime, store=store)
    controller.applications = ["histogram-data-drift", "row-count", "broken"]
    return controller, runtime, store


async def log_and_forward(controller, runtime, store, uid, batch, arrival):
    records = [(uid, start, part) for start, part in split_by_window(batch, P)]
    # as the daemon does: the stream actor gets the records' bytes as the log stores them
    seqs, values = store.wal_append_values([(u, s, b.to_wire()) for u, s, b in records])
    name = await controller.route(uid)
    runtime.streams[name].ingest(
        [(u, q, s, v) for (u, s, _), q, v in zip(records, seqs, values, strict=True)], arrival
    )


async def test_tick_analyzes_each_closed_window_once(env):
    controller, runtime, store = env
    spec = make_spec("ep1")
    store.put_endpoint(spec.to_dict())
    rng = np.random.default_rng(0)
    ts = np.concatenate([np.linspace(0, 59, 50), np.linspace(60, 119, 50), [125.0, 130.0]])
    feats = rng.normal(size=(102, 2))
    feats[50:100] += 3.0  # second window shifted
    await log_and_forward(controller, runtime, store, "ep1", make_batch(ts, feats), arrival=1000.0)
    report = await controller.update(now=1000.0)  # watermark 125 closes [0,60) and [60,120)
    assert report["windows"] == 2
    assert any("broken" in f and "ZeroDivisionError" in f for f in report["failures"])
    results = runtime._writer._target.parquet.read_results("ep1")
    drift = [r for r in results if r["name"] == "general_drift"]
    assert [r["status"] for r in drift] == [0, 2]
    rows = [r["value"] for r in results if r["name"] == "rows"]
    assert rows == [50.0, 50.0]
    again = await controller.update(now=1001.0)
    assert again["windows"] == 0
    assert store.get_last_analyzed("ep1") == {
        "histogram-data-drift": 120.0,
        "row-count": 120.0,
        "broken": 120.0,
    }
    failures = store.app_failures("ep1")
    assert {f["application"] for f in failures} == {"broken"} and len(failures) == 2
    assert store.wal_size() == 1  # the open window [120,180) stays logged


async def test_endpoints_share_stream_actors_past_max_actors(env):
    controller, _runtime, store = env
    for i in range(5):
        store.put_endpoint(make_spec(f"ep{i}").to_dict())
        await controller.route(f"ep{i}")
    assert len(set(controller.routes.values())) == 2
    load = sorted(
        list(controller.routes.values()).count(n) for n in set(controller.routes.values())
    )
    assert load == [2, 3]
    assert store.routes() == controller.routes


async def test_stream_actors_take_placement_slots_in_order_and_keep_them_on_restart(tmp_path):
    controller, runtime, store = build_env(tmp_path, max_actors=3)
    for i in range(5):
        store.put_endpoint(make_spec(f"ep{i}").to_dict())
        await controller.route(f"ep{i}")
    made = [controller.routes[f"ep{i}"] for i in range(3)]  # one actor each, in order
    assert [runtime.stream_indexes[name] for name in made] == [0, 1, 2]
    # a new controller (the daemon restarted) asks for the same actors, slots by name
    again = ControllerActor(controller.settings.to_dict(), runtime=runtime, store=store)
    assert sorted(again.streams) == sorted(made)
    assert [runtime.stream_indexes[name] for name in sorted(made)] == [0, 1, 2]


def test_stream_actor_limit_is_two_per_cpu_within_bounds_unless_set():
    from modelmon_daemon.actors.remote import stream_actor_limit

    s = Settings()
    assert s.stream.max_actors == 0  # the default: from the cluster's CPUs
    assert [stream_actor_limit(s, cpus) for cpus in (1, 2, 3, 8, 64)] == [2, 4, 6, 16, 16]
    s.stream.max_actors = 5
    assert stream_actor_limit(s, 64) == 5


def test_the_rows_held_in_memory_are_shared_by_the_stream_actors_unless_set(env):
    from modelmon_daemon.config import stream_row_budget

    s = Settings()
    assert s.stream.max_buffered_rows == 0  # the default: a share of 16M rows
    budgets = [stream_row_budget(s, actors) for actors in (0, 2, 4, 16, 64)]
    assert budgets == [1_000_000, 8_000_000, 4_000_000, 1_000_000, 1_000_000]
    s.stream.max_buffered_rows = 5000
    assert stream_row_budget(s, 4) == 5000
    controller, runtime, _ = env  # two stream actors: each holds up to 8M rows
    assert controller.settings.stream.max_buffered_rows == 8_000_000
    assert runtime.settings["stream"]["max_buffered_rows"] == 0  # resolved, not changed


async def test_a_lost_stream_actor_is_rebuilt_from_the_log(env):
    controller, runtime, store = env
    store.put_endpoint(make_spec("ep1").to_dict())
    ts = np.linspace(0, 59, 20)
    await log_and_forward(
        controller, runtime, store, "ep1", make_batch(ts, np.zeros((20, 2))), 1000.0
    )
    name = controller.routes["ep1"]
    runtime.streams.pop(name)  # the process died; Ray runs __init__ again
    controller.streams[name] = runtime.stream_actor(name)
    # replayed records count as arriving at restart; quiet for the lateness after that
    report = await controller.update(now=time.time() + 10)
    assert report["windows"] == 1
    state = store.get_state("ep1")
    assert state["events"] == 20 and store.wal_size() == 0


async def test_windows_whose_stream_actor_died_in_the_tick_are_analyzed_after_its_restart(env):
    """The stream actor dies after its collect, taking the windows' data with it: the
    tick must not commit those windows as failed analyses; the restarted actor replays
    them from the log and the next tick analyzes each once."""
    controller, runtime, store = env
    store.put_endpoint(make_spec("ep1").to_dict())
    ts = np.concatenate([np.linspace(0, 59, 30), np.linspace(60, 119, 30), [125.0]])
    feats = np.random.default_rng(2).normal(size=(61, 2))
    await log_and_forward(controller, runtime, store, "ep1", make_batch(ts, feats), 1000.0)
    name = controller.routes["ep1"]

    def died(*args, **kwargs):
        raise RuntimeError("the actor died unexpectedly before finishing this task")

    runtime.streams[name].windows_data = died
    logged = store.wal_size()
    report = await controller.update(now=1000.0)
    assert report["windows"] == 0 and any("WindowDataLost" in f for f in report["failures"])
    assert store.app_failures("ep1") == [] and store.wal_size() == logged == 3
    assert runtime._writer._target.parquet.read_results("ep1") == []
    runtime.streams.pop(name)  # Ray runs __init__ again: the buffers come from the log
    controller.streams[name] = runtime.stream_actor(name)
    report = await controller.update(now=1001.0)
    assert report["windows"] == 2
    results = runtime._writer._target.parquet.read_results("ep1")
    drift = [r["start"] for r in results if r["name"] == "general_drift"]
    assert drift == ["1970-01-01T00:00:00Z", "1970-01-01T00:01:00Z"]
    assert {f["application"] for f in store.app_failures("ep1")} == {"broken"}
    assert store.get_state("ep1")["events"] == 60 and store.wal_size() == 1


async def test_storage_maintenance_is_asked_after_the_tick_once_per_interval(tmp_path, monkeypatch):
    controller, runtime, store = build_env(tmp_path)
    writer = runtime._writer._target
    writer.settings.storage.retention = 86400.0  # 1970's partitions are far past it
    store.put_endpoint(make_spec("ep1").to_dict())
    ts = np.concatenate([np.linspace(0, 59, 30), np.linspace(60, 119, 30), [125.0]])
    batch = make_batch(ts, np.random.default_rng(5).normal(size=(61, 2)))
    await log_and_forward(controller, runtime, store, "ep1", batch, arrival=1000.0)
    calls = Calls(monkeypatch)
    report = await controller.update(now=1000.0)
    assert report["windows"] == 2 and store.get_state("ep1")["closed_through"] == 120.0
    # asked once, after the commit and the acknowledgements, not inside the commit: the
    # tick's files were written, then expired by the maintenance that followed
    assert calls.names.index("maintain_when_due") > calls.names.index("ack_many")
    assert writer.parquet.read_results("ep1") == []
    assert not list((tmp_path / "events").rglob("*.parquet"))
    await controller.update(now=1001.0)
    assert calls.count("maintain_when_due") == 1  # not again within the interval
    controller.maintenance_at = writer.last_maintenance = 0.0  # as if the interval passed
    await controller.update(now=1002.0)  # an idle tick (no window closes) asks as well
    assert calls.count("maintain_when_due") == 2 and writer.last_maintenance > 0


class Calls:
    """Counts the remote calls made through the fake handles (by method name)."""

    def __init__(self, monkeypatch):
        import tests.fakes as fakes

        self.names: list[str] = []
        original = fakes._Method.remote

        def remote(method, *args, **kwargs):
            self.names.append(method.name)
            return original(method, *args, **kwargs)

        monkeypatch.setattr(fakes._Method, "remote", remote)

    def count(self, name):
        return self.names.count(name)


async def test_a_tick_is_batched_and_reference_stats_are_sent_once(env, monkeypatch):
    controller, runtime, store = env
    rng = np.random.default_rng(3)
    uids = [f"ep{i}" for i in range(6)]  # 2 stream actors (max_actors=2): 3 endpoints each
    for uid in uids:
        store.put_endpoint(make_spec(uid).to_dict())
        ts = np.concatenate([np.linspace(0, 59, 30), np.linspace(60, 119, 30), [125.0]])
        await log_and_forward(
            controller, runtime, store, uid, make_batch(ts, rng.normal(size=(61, 2))), 1000.0
        )
    calls = Calls(monkeypatch)
    txn_before = store.env.info()["last_txnid"]
    report = await controller.update(now=1000.0)
    assert report["windows"] == 12 and not [f for f in report["failures"] if "broken" not in f]
    streams = len(set(controller.routes.values()))
    assert calls.count("collect") == streams
    assert calls.count("windows_data") == streams
    assert calls.count("window_data") == 0
    assert calls.count("commit_tick") == 1
    assert calls.count("ack_many") == streams
    assert calls.count("run_many") <= streams * len(runtime.application_actors())
    assert calls.count("stage_events") == 1
    # each application call's outputs are made ready for the commit as they come
    assert calls.count("stage_outputs") == calls.count("run_many")
    # two windows per endpoint: two rounds, each one pending mark and one commit, and
    # the first round's events files marked pending while the applications ran
    assert store.env.info()["last_txnid"] - txn_before <= 5
    sent_first = dict(controller._sent)
    assert sum(len(v) for v in sent_first.values()) == len(uids)
    for uid in uids:  # the next window of every endpoint: no spec travels again
        await log_and_forward(
            controller, runtime, store, uid, make_batch([126.0, 185.0], np.zeros((2, 2))), 1001.0
        )
    seen_specs = []
    for app in runtime.application_actors():
        original = app._target.run_many

        def spy(batches, jobs, specs, _original=original, _k=app._target.index):
            seen_specs.append(dict(specs))
            # each actor gets only its own windows: one batch per job, in job order
            assert len(batches) == len(jobs) and [p for p, *_ in jobs] == list(range(len(jobs)))
            assert all(controller._app_of(uid) == _k for _, uid, _, _ in jobs)
            assert [len(b) for b in batches] == [m.rows for *_, m in jobs]
            return _original(batches, jobs, specs)

        monkeypatch.setattr(app._target, "run_many", spy)
    fetched = []
    changed = store.get_endpoints_changed

    def read_changed(uids, known):
        found = changed(uids, known)
        fetched.extend(found)
        return found

    monkeypatch.setattr(store, "get_endpoints_changed", read_changed)
    report = await controller.update(now=1002.0)
    assert report["windows"] == 6 and not [f for f in report["failures"] if "broken" not in f]
    assert seen_specs and all(not s for s in seen_specs)
    # the records themselves are not even read out for the tick: only their versions
    assert len(fetched) == len(uids) and all(raw is None for _, raw in fetched)
    for uid in uids:
        assert store.get_state(uid)["closed_through"] == 180.0


async def test_an_application_actor_that_lost_its_cache_gets_the_specs_again(env, monkeypatch):
    controller, runtime, store = env
    store.put_endpoint(make_spec("ep1").to_dict())
    ts = np.concatenate([np.linspace(0, 59, 40), [70.0]])
    await log_and_forward(
        controller, runtime, store, "ep1", make_batch(ts, np.zeros((41, 2))), 1000.0
    )
    await controller.update(now=1000.0)
    for app in runtime.application_actors():
        app._target.spec_cache.clear()  # as after a restart
    await log_and_forward(
        controller, runtime, store, "ep1", make_batch([71.0, 130.0], np.zeros((2, 2))), 1001.0
    )
    calls = Calls(monkeypatch)
    report = await controller.update(now=1002.0)
    assert report["windows"] == 1
    assert calls.count("run_many") == 2  # "missing", then again with the spec
    results = runtime._writer._target.parquet.read_results("ep1")
    drift = [r for r in results if r["name"] == "general_drift"]
    assert [r["start"] for r in drift] == ["1970-01-01T00:00:00Z", "1970-01-01T00:01:00Z"]


async def test_a_stream_actor_past_its_row_budget_gives_the_same_results(tmp_path):
    """With a budget of 40 rows, windows are read back from the log: every result is the
    same as with everything held, and the actor never holds more than its budget."""
    outcomes = []
    for name, budget in (("held", 1_000_000), ("spilled", 40)):
        controller, runtime, store = build_env(tmp_path / name, max_buffered_rows=budget)
        store.put_endpoint(make_spec("ep1").to_dict())
        rng = np.random.default_rng(3)
        most = 0
        for k in range(6):  # six records over two windows
            ts = np.sort(rng.uniform(0, 119, 30)) if k < 5 else np.array([125.0])
            feats = rng.normal(size=(len(ts), 2)) + (ts[:, None] >= 60) * 2.0
            await log_and_forward(controller, runtime, store, "ep1", make_batch(ts, feats), 1000.0)
            most = max(most, runtime.streams["stream:ep1"].held_rows())
        report = await controller.update(now=1000.0)
        assert report["windows"] == 2
        results = runtime._writer._target.parquet.read_results("ep1")
        outcomes.append(sorted((r["name"], r["start"], r["value"]) for r in results))
        if name == "spilled":
            assert most <= 40
            assert runtime.streams["stream:ep1"].spilled_rows > 0
    assert outcomes[0] == outcomes[1]


async def test_a_tick_takes_whole_endpoints_up_to_its_row_budget(tmp_path):
    controller, runtime, store = build_env(tmp_path)
    controller.settings.controller.max_tick_rows = 150
    for uid in ("a", "b", "c"):
        store.put_endpoint(make_spec(uid).to_dict())
        ts = np.r_[np.linspace(0, 59, 100), [125.0]]
        batch = make_batch(ts, np.random.default_rng(0).normal(size=(101, 2)))
        await log_and_forward(controller, runtime, store, uid, batch, 1000.0)
    first = await controller.update(now=1000.0)
    assert (first["windows"], first["deferred"]) == (1, 2)  # 100 rows fit, 200 would not
    second = await controller.update(now=1000.0)
    assert (second["windows"], second["deferred"]) == (1, 1)
    third = await controller.update(now=1000.0)
    assert (third["windows"], third["deferred"]) == (1, 0)
    assert all(store.get_last_analyzed(u) for u in ("a", "b", "c"))


async def test_route_many_routes_a_burst_and_persists_it(env):
    controller, _, store = env
    uids = [f"burst{i}" for i in range(5)]
    for uid in uids:
        store.put_endpoint(make_spec(uid).to_dict())
    routes = await controller.route_many(uids)
    assert set(routes) == set(uids)
    assert store.routes() == routes  # persisted (in one transaction)
    assert len(set(routes.values())) == 2  # stream.max_actors = 2 here
    assert await controller.route_many(uids) == routes  # idempotent


async def test_an_endpoint_deleted_while_its_record_is_fetched_fails_no_other_window(
    env, monkeypatch
):
    """An application actor lost its cache, and one endpoint's record is gone by the time
    the controller reads it (deleted during the tick): the other endpoints of the same
    call are analyzed as usual, not failed with it."""
    controller, runtime, store = env
    uids = [f"ep{i}" for i in range(4)]
    rng = np.random.default_rng(5)
    for uid in uids:
        store.put_endpoint(make_spec(uid).to_dict())
        ts = np.concatenate([np.linspace(0, 59, 30), [70.0]])
        await log_and_forward(
            controller, runtime, store, uid, make_batch(ts, rng.normal(size=(31, 2))), 1000.0
        )
    await controller.update(now=1000.0)
    for uid in uids:
        await log_and_forward(
            controller, runtime, store, uid, make_batch([71.0, 130.0], np.zeros((2, 2))), 1001.0
        )
    for app in runtime.application_actors():
        app._target.spec_cache.clear()  # as after a restart
    gone = "ep1"
    raw = store.get_endpoints_raw
    monkeypatch.setattr(
        store,
        "get_endpoints_raw",
        lambda asked: [None if u == gone else r for u, r in zip(asked, raw(asked), strict=True)],
    )
    report = await controller.update(now=1002.0)
    assert not [f for f in report["failures"] if "application actor failed" in f]
    for uid in uids:
        drift = [
            r
            for r in runtime._writer._target.parquet.read_results(uid)
            if r["name"] == "general_drift"
        ]
        assert len(drift) == (1 if uid == gone else 2), uid


async def test_records_reach_the_application_actors_before_their_windows(env, monkeypatch):
    """Registered endpoints' records are handed to their application actors between
    ticks, reference arrays derived there; the tick of their first windows then sends
    no record and derives nothing. A registration again with a new reference is handed
    over again."""
    from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE

    controller, runtime, store = env
    uids = [f"ep{i}" for i in range(6)]
    for uid in uids:
        store.put_endpoint(make_spec(uid).to_dict())
    routed = await controller.route_many(uids)
    assert sorted(routed) == uids
    await controller._deliverer
    assert controller.records_delivered == len(uids)
    for app in runtime.application_actors():
        mine = sorted(u for u in uids if controller._app_of(u) == app._target.index)
        assert sorted(app._target.spec_cache) == mine
    rng = np.random.default_rng(4)
    for uid in uids:
        ts = np.concatenate([np.linspace(0, 59, 30), [70.0]])
        await log_and_forward(
            controller, runtime, store, uid, make_batch(ts, rng.normal(size=(31, 2))), 1000.0
        )
    seen_specs = []
    for app in runtime.application_actors():
        original = app._target.run_many

        def spy(batches, jobs, specs, _original=original):
            seen_specs.append(dict(specs))
            return _original(batches, jobs, specs)

        monkeypatch.setattr(app._target, "run_many", spy)
    derived = len(REFERENCE_CACHE)
    report = await controller.update(now=1000.0)
    assert report["windows"] == len(uids)
    assert seen_specs and all(not s for s in seen_specs)
    assert len(REFERENCE_CACHE) == derived  # derived when delivered, not in the tick
    # ep0 registered again with another reference: its new record is handed over again
    store.put_endpoint(make_spec("ep0", seed=9).to_dict())
    await controller.route_many(["ep0"])
    await controller._deliverer
    assert controller.records_delivered == len(uids) + 1
    (owner,) = [a._target for a in runtime.application_actors() if "ep0" in a._target.spec_cache]
    stats = owner.spec_cache["ep0"][1]["feature_stats"]
    assert stats == make_spec("ep0", seed=9).to_dict()["feature_stats"]
    await controller.route_many(uids)  # nothing changed: nothing read out, nothing sent
    await controller._deliverer
    assert controller.records_delivered == len(uids) + 1
