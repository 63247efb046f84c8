"""The daemon on a 3-node Ray cluster (ray.cluster_utils.Cluster on this machine): stream
and application actors are spread over the nodes; the worker node that runs the loaded
endpoint's stream actor, SIGKILLed under load, loses no acknowledged event, stores none
twice, analyzes every window once, and the analysis goes on (the stream actor restarts on
another node and rebuilds its buffers from the log owner)."""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelmon_daemon.core.daemon_file import read_daemon_file
from tests.e2e.conftest import Daemon, cli, http
from tests.helpers import stored_events
from tests.ports import free_port

pytestmark = pytest.mark.e2e
P = 30.0


@pytest.fixture
def cluster():
    from ray.cluster_utils import Cluster

    os.environ.pop("RAY_ADDRESS", None)
    c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    yield c, workers
    c.shutdown()


def analyzed(data, uid):
    if not list((data / "results").rglob("*.parquet")):
        return pd.DataFrame({"start": []})
    results = pd.read_parquet(data / "results", filters=[("endpoint_id", "==", uid)])
    return results[results["name"] == "general_drift"]


def test_a_worker_node_lost_under_load_loses_nothing(cluster, short_tmp):
    c, workers = cluster
    data = short_tmp / "cluster"
    daemon = Daemon(
        data,
        free_port(),
        ["--ray-address", c.address, "--set", "applications.pool_size=3"],
        lateness="3s",  # a pause of the poster on a busy machine must not make events late
    ).start(timeout=180)
    try:
        rng = np.random.default_rng(6)
        by_node = {w.node_id: w for w in workers}
        names = []
        for k in range(6):  # one stream actor each (stream.max_actors resolves to 6)
            status, _ = daemon.post(
                "/v1/endpoints",
                {
                    "uid": f"cl{k}",
                    "project": "cl",
                    "name": f"cl{k}",
                    "feature_names": ["a", "b"],
                    "reference": {"rows": rng.normal(size=(500, 2)).tolist()},
                },
            )
            assert status == 201
            names.append(
                daemon.wait_for(
                    lambda k=k: daemon.get(f"/v1/endpoints/cl{k}")[1]["stream_actor"], timeout=60
                )
            )
        # every actor's node, once it has started and answers
        placed = daemon.wait_for(
            lambda: (
                found
                if all(
                    (found := daemon.get("/v1/status")[1]["controller"]["stream_nodes"]).get(n)
                    for n in names
                )
                else None
            ),
            timeout=120,
        )
        # asked for on the nodes in turn: two on each of the three
        on_node = Counter(placed[n] for n in names)
        assert sorted(on_node.values()) == [2, 2, 2], placed
        assert set(by_node) < set(on_node), (placed, list(by_node))
        # node servers on the daemon's port (the default): on one machine it is taken, and
        # status says so, node by node, with the way out
        failed = daemon.wait_for(
            lambda: (
                len(found := daemon.get("/v1/status")[1]["ingestion_server_errors"]) == 2 and found
            ),
            timeout=60,
        )
        assert {f["node"] for f in failed} == set(by_node), failed
        assert all("daemon.node_port = 0" in f["error"] for f in failed), failed
        assert "not serving: " in daemon.cli("status").stdout
        _, status_body = daemon.get("/v1/status")
        nodes = status_body["controller"]["application_nodes"]
        assert len(set(nodes)) == 3, nodes  # spread over the three nodes
        # the node to kill: a worker's (the head runs the daemon)
        k = next(k for k, n in enumerate(names) if placed[n] in by_node)
        uid, doomed = f"cl{k}", placed[names[k]]
        # stream.max_actors left at 0: two per CPU of the cluster (3 nodes, 1 CPU each)
        assert status_body["controller"]["stream_actor_limit"] == 6
        # stream.max_buffered_rows left at 0: 16M rows in memory shared by those six
        assert status_body["controller"]["stream_rows_per_actor"] == 16_000_000 // 6

        first = (math.floor(time.time() / P) - 30) * P  # 30 windows of history, in order
        acked: list[str] = []
        failed: list[int] = []
        stop = threading.Event()

        def post_forever():
            i = 0
            while not stop.is_set() and i < 600:
                ids = [f"c{i}-{k}" for k in range(20)]
                ts = [first + (i * 20 + k) * 0.075 for k in range(20)]  # 20 requests a window
                status, _ = http(
                    "POST",
                    daemon.url + f"/v1/endpoints/{uid}/events",
                    {
                        "inputs": rng.normal(size=(20, 2)).tolist(),
                        "timestamps": ts,
                        "request_ids": ids,
                    },
                    timeout=30,
                    token=daemon.token,
                )
                if status == 202:
                    acked.extend(ids)
                else:
                    failed.append(status)
                i += 1
                time.sleep(0.01)

        poster = threading.Thread(target=post_forever)
        poster.start()
        daemon.wait_for(lambda: len(analyzed(data, uid)) >= 3, timeout=90)
        c.remove_node(by_node[doomed], allow_graceful=False)  # SIGKILL of its processes
        killed_at = time.time()
        before = len(analyzed(data, uid))
        daemon.wait_for(lambda: len(analyzed(data, uid)) > before, timeout=60)
        resumed = time.time() - killed_at
        poster.join(timeout=120)
        stop.set()
        assert not failed, f"ingestion refused {len(failed)} requests: {set(failed)}"

        def settled():
            _, record = daemon.get(f"/v1/endpoints/{uid}")
            _, st = daemon.get("/v1/status")
            return st["wal_records"] == 0 and record["buffered_events"] == 0

        daemon.wait_for(settled, timeout=120)
        events = stored_events(data, uid)
        stored = events["request_id"].tolist()
        assert len(stored) == len(set(stored)), "an event was stored twice"
        assert set(acked) <= set(stored), f"{len(set(acked) - set(stored))} events lost"
        windows = analyzed(data, uid)
        assert windows["start"].is_unique, "a window was analyzed twice"
        starts = pd.to_datetime(windows["start"], utc=True).map(lambda t: t.timestamp())
        missing = sorted({first + w * P for w in range(30)} - set(starts))
        assert not missing and len(windows) == 30, f"windows not analyzed: {missing}"
        _, record = daemon.get(f"/v1/endpoints/{uid}")
        assert not record["app_failures"], record["app_failures"]  # the others took over
        _, st = daemon.get("/v1/status")
        moved = st["controller"]["stream_nodes"][record["stream_actor"]]
        assert moved not in (None, doomed), moved  # restarted on a live node
        print(f"\nworker node lost: analysis resumed {resumed:.1f} s after the kill")
    finally:
        daemon.stop()


def test_every_node_serves_ingestion_into_the_one_log(cluster, short_tmp):
    """Events posted to the ingestion server of each worker node are durable before the
    202, stored once and analyzed once, next to those posted to the daemon itself. The
    daemon starts in another folder than the cluster's processes, with a relative data
    dir: the log owner must open the same one."""
    c, workers = cluster
    data = short_tmp / "nodes"
    assert Path.cwd() != short_tmp
    daemon = Daemon(
        data,
        free_port(),
        ["--ray-address", c.address, "--set", "daemon.node_port=0"],
        "1s",
        cwd=short_tmp,
    ).start(timeout=180)
    try:

        def servers():
            found = daemon.get("/v1/status")[1]["ingestion_servers"]
            return found if len(found) == 2 else None

        urls = [s["url"] for s in daemon.wait_for(servers, timeout=120)]
        assert {s["node"] for s in servers()} == {w.node_id for w in workers}
        assert daemon.url not in urls
        status, _ = daemon.post(
            "/v1/endpoints",
            {
                "uid": "nd",
                "project": "cl",
                "name": "nd",
                "feature_names": ["a", "b"],
                "reference": {"rows": np.random.default_rng(1).normal(size=(300, 2)).tolist()},
            },
        )
        assert status == 201
        rng = np.random.default_rng(9)
        first = (math.floor(time.time() / P) - 3) * P  # three closed windows

        def batch(tag: str, k: int) -> dict:
            return {
                "inputs": rng.normal(size=(20, 2)).tolist(),
                "timestamps": [first + k * P + 1 + i * 0.1 for i in range(20)],
                "request_ids": [f"{tag}-{k}-{i}" for i in range(20)],
            }

        # the same token, the same checks, on every node
        status, body = http("POST", urls[0] + "/v1/endpoints/nd/events", batch("x", 0))
        assert status == 401, body
        bad = batch("x", 0)
        bad["inputs"][7] = [1.0, "two"]
        status, body = http("POST", urls[0] + "/v1/endpoints/nd/events", bad, token=daemon.token)
        assert status == 400 and body["error"]["details"]["index"] == 7, body
        status, body = http("POST", urls[1] + "/v1/endpoints/nope/events", bad, token=daemon.token)
        assert status == 404, body

        acked: list[str] = []
        for k in range(3):
            for tag, url in (("n0", urls[0]), ("n1", urls[1]), ("hd", daemon.url)):
                body = batch(tag, k)
                status, answer = http(
                    "POST", url + "/v1/endpoints/nd/events", body, token=daemon.token
                )
                assert status == 202, answer
                acked += body["request_ids"]
        # MLRun's serving posting to a node: the endpoint is created under its id
        events = [
            {
                "endpoint_id": "ml-node",
                "model": "churn:v1",
                "function_uri": "cl/serving:latest",
                "request": {"id": f"m{i}", "inputs": [[float(i), 1.0]]},
                "resp": {"id": f"m{i}", "outputs": [i % 2]},
                "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(first + i)) + ".000000",
                "microsec": 900,
            }
            for i in range(30)
        ]
        status, answer = http("POST", urls[1] + "/v1/events", events, token=daemon.token)
        assert status == 202 and answer["accepted"] == 30, answer

        def settled():
            _, st = daemon.get("/v1/status")
            return st["wal_records"] == 0 and len(analyzed(data, "nd")) == 3

        daemon.wait_for(settled, timeout=120)
        stored = stored_events(data, "nd")["request_id"].tolist()
        assert sorted(stored) == sorted(acked)  # each once, none lost
        assert analyzed(data, "nd")["start"].is_unique
        _, record = daemon.get("/v1/endpoints/ml-node")
        assert record["auto_registered"] and record["feature_names"] == ["f0", "f1"]
        ml = stored_events(data, "ml-node")
        assert sorted(ml["request_id"]) == sorted(f"m{i}" for i in range(30))
        # labels posted to a node go to their owner, the writer, next to the data dir
        status, answer = http(
            "POST",
            urls[0] + "/v1/endpoints/nd/labels",
            {"request_ids": acked[:5], "labels": [1, 0, 1, 0, 1]},
            token=daemon.token,
        )
        assert status == 202 and answer["accepted"] == 5, answer
        labels = pd.read_parquet(data / "labels" / "endpoint_id=nd")
        assert sorted(labels["request_id"]) == sorted(acked[:5])
        _, health = http("GET", urls[0] + "/healthz")
        assert health["status"] == "ok" and health["ingest"]["rows_accepted"] == 60
        # its own appends to the log owner: every row it accepted went in one of them
        assert health["log"]["rows"] == 60 and health["log"]["commits"] >= 1
        assert health["log"]["requests"] >= health["log"]["commits"]
    finally:
        daemon.stop()


# a one-node cluster with token authentication, in a process of its own (so that this
# process's Ray keeps its own auth mode); it prints its address and lives until stdin ends
TOKEN_CLUSTER = """
import sys
from ray.cluster_utils import Cluster
c = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 1})
print(c.address, flush=True)
try:
    sys.stdin.read()
finally:
    c.shutdown()
"""


def test_joins_a_token_cluster_with_the_token_it_finds(short_tmp):
    """Ray turns token mode on by itself only for clusters it starts: joining one by
    address with RAY_AUTH_MODE unset, the daemon uses the token Ray would find. Without
    a token it stops with a line that says what the cluster wants, not Ray's retries."""
    folder = short_tmp / "tokencl"
    folder.mkdir()
    token_file = folder / "ray_token"
    token_file.write_text(secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(token_file))
    holder = subprocess.Popen(
        [sys.executable, "-c", TOKEN_CLUSTER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        start_new_session=True,
    )
    try:
        assert holder.stdout is not None
        address = holder.stdout.readline().strip()
        assert address, "the token cluster did not start"
        daemon = Daemon(
            folder / "data",
            free_port(),
            ["--ray-address", address, "--set", "daemon.node_ingestion=false"],
            env={"RAY_AUTH_MODE": None, "RAY_AUTH_TOKEN_PATH": str(token_file)},
        ).start(timeout=180)
        try:
            assert (read_daemon_file(daemon.data_dir) or {}).get("ray_auth_mode") == "token"
            status, _ = daemon.post(
                "/v1/endpoints",
                {"uid": "tk", "project": "t", "name": "tk", "feature_names": ["a"]},
            )
            assert status == 201
            status, body = daemon.post("/v1/endpoints/tk/events", {"inputs": [[1.0], [2.0]]})
            assert status == 202 and body["accepted"] == 2, body
        finally:
            daemon.stop()
        # no token where Ray looks (an empty home, a token path that names nothing)
        home = folder / "home"
        home.mkdir()
        started = time.time()
        result = cli(
            "start",
            "--data-dir",
            str(folder / "data2"),
            "--port",
            str(free_port()),
            "--ray-address",
            address,
            env_extra={
                "HOME": str(home),
                "RAY_AUTH_TOKEN_PATH": str(folder / "none"),
                "RAY_AUTH_MODE": None,
            },
            timeout=150,
        )
        assert result.returncode != 0
        assert f"cannot join the Ray cluster at {address}" in result.stderr, result.stderr
        assert "token authentication" in result.stderr, result.stderr
        assert time.time() - started < 120
        result = cli(
            "start",
            "--data-dir",
            str(folder / "data3"),
            "--port",
            str(free_port()),
            "--ray-address",
            address,
            env_extra={"HOME": str(home), "RAY_AUTH_MODE": "token"},
            timeout=150,
        )
        assert result.returncode != 0
        assert "no authentication token was found" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr, result.stderr
    finally:
        if holder.stdin is not None:
            holder.stdin.close()
        try:
            holder.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(holder.pid, signal.SIGKILL)
