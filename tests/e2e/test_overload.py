"""Bounded under load, with real faults: a flood gets 429 with Retry-After once
daemon.max_pending_rows rows wait (memory stops growing), a mail server that never
answers does not slow ingestion, and a full LMDB map grows (or, at its maximum, refuses
with 507 and recovers after a restart with more room) without losing an acknowledged
event. Each prints its figures (the README's reliability section quotes them)."""

from __future__ import annotations

import json
import math
import os
import statistics
import time
import urllib.error
import urllib.request

import msgpack
import numpy as np
import pytest

from tests.e2e.conftest import Daemon
from tests.helpers import stored_events
from tests.ports import free_port
from tests.receivers import HangingSmtp

pytestmark = pytest.mark.e2e
P = 30.0


def post_raw(daemon, path, body: bytes, content_type="application/msgpack", timeout=60):
    """(status, headers, json body)."""
    req = urllib.request.Request(daemon.url + path, data=body, method="POST")
    req.add_header("Content-Type", content_type)
    req.add_header("Authorization", f"Bearer {daemon.token}")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def tree_rss_mib(pgid: int) -> float:
    """Resident memory of every process in the daemon's process group (Ray included)."""
    total = 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid:
                continue
            with open(f"/proc/{pid}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    return total / 2**20


def register(daemon, uid, n_features, rng):
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": uid,
            "project": "load",
            "name": uid,
            "feature_names": [f"f{j}" for j in range(n_features)],
            "reference": {"rows": rng.normal(size=(500, n_features)).tolist()},
        },
    )
    assert status == 201


def batch(rng, n, n_features, ts, prefix):
    return msgpack.packb(
        {
            "inputs": {f"f{j}": rng.normal(size=n).tolist() for j in range(n_features)},
            "timestamps": ts,
            "request_ids": [f"{prefix}-{k}" for k in range(n)],
        }
    )


def committed(daemon, uid):
    """Rows of the endpoint that are in Parquet (received minus still buffered)."""
    record = daemon.get(f"/v1/endpoints/{uid}")[1]
    return record["events_total"] - record["buffered_events"]


def parquet_rows(data_dir, uid) -> int:
    return len(stored_events(data_dir, uid))


def test_a_flood_gets_429_with_retry_after_and_memory_stops_growing(short_tmp):
    limit = 20_000
    daemon = Daemon(
        short_tmp / "flood",
        free_port(),
        ["--set", f"daemon.max_pending_rows={limit}"],
    ).start()
    try:
        rng = np.random.default_rng(1)
        register(daemon, "flood", 10, rng)
        acked = refused = 0
        first_refusal = None
        rss_at_refusal = None
        rss_samples = []
        deadline = time.time() + 60
        i = 0
        while time.time() < deadline and refused < 150:
            now = time.time()
            body = batch(rng, 1000, 10, [now] * 1000, f"b{i}")  # the open window
            status, headers, answer = post_raw(daemon, "/v1/endpoints/flood/events", body)
            i += 1
            if status == 202:
                acked += 1000
            else:
                assert status == 429, answer
                assert int(headers["Retry-After"]) >= 1
                assert answer["error"]["code"] == "overloaded"
                refused += 1
                if first_refusal is None:
                    first_refusal = acked
                    rss_at_refusal = tree_rss_mib(daemon.proc.pid)
                elif refused % 30 == 0:
                    rss_samples.append(tree_rss_mib(daemon.proc.pid))
                _, health = daemon.get("/healthz")
                assert health["pending_rows"] <= limit + 1000
        assert first_refusal is not None, "never refused"
        assert limit <= first_refusal <= limit + 1000
        growth = max(rss_samples) - rss_at_refusal
        print(
            f"\nflood: {acked} rows acknowledged, then {refused} requests refused (429); "
            f"process tree {rss_at_refusal:.0f} MiB at the first 429, "
            f"growth while refusing {growth:+.0f} MiB"
        )
        assert growth < 150, (rss_at_refusal, rss_samples)
        # once the window is committed, the same client is accepted again: nothing lost
        daemon.wait_for(lambda: committed(daemon, "flood") == acked, timeout=P + 60)
        assert parquet_rows(daemon.data_dir, "flood") == acked
        body = batch(rng, 10, 10, [time.time()] * 10, "after")
        assert post_raw(daemon, "/v1/endpoints/flood/events", body)[0] == 202
    finally:
        daemon.stop()


def test_a_hanging_mail_server_does_not_slow_ingestion(short_tmp, tmp_path):
    smtp = HangingSmtp().start()
    cfg = tmp_path / "mail.toml"
    cfg.write_text(f"""
[[alerts]]
name = "mail-drift"
entities = {{ kind = "model-endpoint-result", ids = ["*"] }}
trigger = {{ events = ["data-drift-detected"] }}

[[alerts.notifications]]
kind = "email"
smtp_host = "127.0.0.1"
smtp_port = {smtp.port}
from = "mm@example.com"
to = ["oncall@example.com"]
""")
    daemon = Daemon(
        short_tmp / "hang",
        free_port(),
        ["--config", str(cfg), "--set", "applications.builtin=histogram-data-drift"],
    ).start()
    try:
        rng = np.random.default_rng(2)
        for uid in ("mail-a", "mail-b", "mail-c", "mail-d"):  # four deliveries hang at once
            register(daemon, uid, 2, rng)
            start = (math.floor(time.time() / P) - 3) * P
            status, _ = daemon.post(
                f"/v1/endpoints/{uid}/events",
                {
                    "inputs": rng.normal(4, 1, size=(200, 2)).tolist(),
                    "timestamps": (start + np.linspace(0, P - 1, 200)).tolist(),
                },
            )
            assert status == 202
        daemon.wait_for(lambda: smtp.connections >= 4, timeout=90)
        register(daemon, "single", 2, rng)
        latencies = []
        for k in range(200):
            t0 = time.perf_counter()
            status, _ = daemon.post(
                "/v1/endpoints/single/events",
                {"inputs": [[1.0, 2.0]], "request_ids": [f"s{k}"]},
            )
            latencies.append(time.perf_counter() - t0)
            assert status == 202
        _, history = daemon.get("/v1/alerts/mail-drift/events")
        assert not [e for e in history["events"] if e["action"] == "delivered"]
        median, worst = statistics.median(latencies), max(latencies)
        print(
            f"\nhanging SMTP ({smtp.connections} deliveries stuck): 200 single-event posts, "
            f"median {median * 1000:.1f} ms, worst {worst * 1000:.0f} ms"
        )
        assert median < 0.1 and worst < 2.0
    finally:
        daemon.stop()
        smtp.stop()


def test_a_full_lmdb_map_grows_and_at_its_maximum_refuses_then_recovers(short_tmp):
    rng = np.random.default_rng(3)
    small = ["--set", "storage.lmdb_map_size=16MiB"]
    daemon = Daemon(short_tmp / "mapgrow", free_port(), [*small]).start()
    try:
        register(daemon, "big", 20, rng)
        sent = 0
        for i in range(60):  # ~60 MB of log records in the open window: the map must grow
            body = batch(rng, 5000, 20, [time.time()] * 5000, f"g{i}")
            status, _, answer = post_raw(daemon, "/v1/endpoints/big/events", body)
            assert status == 202, answer
            sent += 5000
        _, health = daemon.get("/healthz")
        assert health["storage"]["resizes"] >= 1
        assert health["storage"]["map_size_bytes"] > 16 * 2**20
        print(
            f"\nmap growth: {sent} rows logged, map 16 MiB -> "
            f"{health['storage']['map_size_bytes'] / 2**20:.0f} MiB "
            f"in {health['storage']['resizes']} resizes, every request 202"
        )
        daemon.wait_for(lambda: committed(daemon, "big") == sent, timeout=P + 90)
        assert parquet_rows(daemon.data_dir, "big") == sent
    finally:
        daemon.stop()

    capped = ["--set", "storage.lmdb_map_size=16MiB", "--set", "storage.lmdb_max_map_size=16MiB"]
    data = short_tmp / "mapfull"
    daemon = Daemon(data, free_port(), [*capped]).start()
    acked = 0
    try:
        register(daemon, "full", 20, rng)
        refused = None
        for i in range(40):
            body = batch(rng, 5000, 20, [time.time()] * 5000, f"f{i}")
            status, headers, answer = post_raw(daemon, "/v1/endpoints/full/events", body)
            if status == 202:
                acked += 5000
                continue
            assert status == 507, answer
            assert answer["error"]["code"] == "storage_full" and int(headers["Retry-After"]) >= 1
            refused = i
            break
        assert refused is not None and acked > 0
        status, health = daemon.get("/healthz")
        assert status == 503 and health["storage"]["full"]
    finally:
        daemon.stop()
    # more room, same data dir: every acknowledged event reaches Parquet, once
    daemon = Daemon(data, free_port(), ["--set", "storage.lmdb_map_size=16MiB"]).start()
    try:
        daemon.wait_for(lambda: committed(daemon, "full") == acked, timeout=P + 90)
        assert parquet_rows(data, "full") == acked
        print(f"map full at its maximum: {acked} acknowledged rows, all stored after restart")
    finally:
        daemon.stop()


def test_a_huge_body_is_decoded_off_the_loop_and_large_ones_are_bounded(short_tmp):
    import threading

    daemon = Daemon(
        short_tmp / "huge",
        free_port(),
        ["--set", "daemon.max_large_requests=1", "--set", "daemon.max_body_size=64MiB"],
    ).start()
    try:
        rng = np.random.default_rng(4)
        register(daemon, "huge", 20, rng)
        n = 120_000  # ~45 MiB of JSON
        now = time.time()
        body = json.dumps(
            {
                "inputs": rng.normal(size=(n, 20)).round(12).tolist(),
                "timestamps": [now] * n,
            }
        ).encode()
        answers: list = []
        gate = threading.Barrier(3)

        def send_huge():
            gate.wait()
            answers.append(
                post_raw(daemon, "/v1/endpoints/huge/events", body, "application/json", 120)
            )

        senders = [threading.Thread(target=send_huge) for _ in range(3)]
        for t in senders:
            t.start()
        time.sleep(0.3)  # the huge bodies are being read or decoded
        probes = []
        while any(t.is_alive() for t in senders):
            t0 = time.perf_counter()
            assert daemon.get("/healthz")[0] == 200
            probes.append(time.perf_counter() - t0)
            time.sleep(0.05)
        for t in senders:
            t.join()
        statuses = sorted(a[0] for a in answers)
        assert 202 in statuses and 503 in statuses and set(statuses) <= {202, 503}, statuses
        for status, headers, answer in answers:
            if status == 202:
                assert answer["accepted"] == n
            else:
                assert answer["error"]["code"] == "busy" and int(headers["Retry-After"]) >= 1
        print(
            f"\nhuge bodies ({len(body) / 2**20:.0f} MiB, 3 at once, 1 decoded at a time): "
            f"{statuses}; {len(probes)} health probes meanwhile, "
            f"worst {max(probes) * 1000:.0f} ms"
        )
        assert max(probes) < 2.0
    finally:
        daemon.stop()
