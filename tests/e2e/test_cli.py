"""The command line: start/stop/status, queries, handles from another process, the demo."""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import ROOT, Daemon, cli, http
from tests.ports import free_port

pytestmark = pytest.mark.e2e


def test_bad_config_value_stops_startup_naming_the_key(tmp_path):
    out = cli("start", "--data-dir", str(tmp_path), "--base-period", "soon")
    assert out.returncode == 2
    assert "windows.base_period" in out.stderr
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[drift]\npotential_threshold = 0.9\ndetected_threshold = 0.8\n")
    out = cli("start", "--config", str(cfg))
    assert out.returncode == 2 and "drift.detected_threshold" in out.stderr
    out = cli("start", "--data-dir", str(tmp_path), env_extra={"MODELMON_DAEMON_PORT": "x"})
    assert out.returncode == 2 and "MODELMON_DAEMON_PORT" in out.stderr
    assert not (tmp_path / "lmdb").exists()  # nothing was started


def test_a_damaged_store_stops_startup_in_one_line_and_is_left_as_it_is(tmp_path):
    (tmp_path / "lmdb").mkdir()
    damaged = bytes(range(256)) * 400  # not an LMDB file
    (tmp_path / "lmdb" / "data.mdb").write_bytes(damaged)
    out = cli("start", "--data-dir", str(tmp_path), "--port", str(free_port()), timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"modelmon-daemon: cannot open the store: {tmp_path / 'lmdb'}: MDB_INVALID: File is "
        "not an LMDB file; restore it from a backup, or move the data dir aside to start empty"
    )
    assert (tmp_path / "lmdb" / "data.mdb").read_bytes() == damaged
    assert not (tmp_path / "daemon.json").exists()


def test_a_token_file_holding_no_token_stops_startup_naming_it(tmp_path):
    token = tmp_path / "auth_token"
    token.write_bytes(b"\xff\xfe not a token")
    out = cli("start", "--data-dir", str(tmp_path), "--port", str(free_port()), timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"modelmon-daemon: {token}: not a bearer token (not ASCII text); "
        "remove it to have a new one made, or write a token there"
    )
    assert token.read_bytes() == b"\xff\xfe not a token"  # kept: clients may read it
    assert not (tmp_path / "lmdb").exists()


def test_a_port_in_use_stops_startup_in_one_line_before_anything_starts(tmp_path):
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        out = cli("start", "--data-dir", str(tmp_path / "data"), "--port", str(port), timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    assert out.stderr.strip() == (
        f"modelmon-daemon: cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process has it? choose one with --port)"
    )
    assert not (tmp_path / "data" / "lmdb").exists()  # checked before LMDB and Ray


def test_an_unreachable_ray_address_stops_startup_in_one_line(tmp_path):
    gcs = f"127.0.0.1:{free_port()}"  # nothing listens there
    for detach in ([], ["--detach"]):
        out = cli(
            "start",
            *detach,
            "--data-dir",
            str(tmp_path / "d"),
            "--ray-address",
            gcs,
            "--port",
            str(free_port()),
            timeout=60,
        )
        assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
        assert out.stderr.strip() == (
            f"modelmon-daemon: cannot reach the Ray cluster at {gcs}: Connection refused "
            "(is `ray start --head` running there?)"
        )
    out = cli("start", "--data-dir", str(tmp_path / "d"), "--ray-address", "head-node")
    assert "ray.address 'head-node': expected host:port" in out.stderr
    assert not (tmp_path / "d" / "lmdb").exists()


def test_a_stale_daemon_file_never_stops_the_process_that_got_its_pid(tmp_path):
    """A daemon killed without cleaning up leaves daemon.json; the system may give its
    pid to another process since: `stop` leaves that one alone, queries do not go to the
    file's port."""
    data = tmp_path / "data"
    data.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        stat = (Path("/proc") / str(other.pid) / "stat").read_text()
        began = int(stat.rsplit(")", 1)[1].split()[19])  # its start, in ticks since boot
        (data / "daemon.json").write_text(
            json.dumps(
                {
                    "pid": other.pid,
                    "proc_start": began - 100,  # the dead daemon's process started earlier
                    "url": "http://127.0.0.1:9",
                    "host": "127.0.0.1",
                    "port": 9,
                    "started": time.time() - 30,
                }
            )
        )
        out = cli("stop", "--data-dir", str(data), "--timeout", "2")
        assert out.returncode == 1 and out.stdout.strip() == f"no daemon running on {data}"
        time.sleep(0.2)
        assert other.poll() is None  # not signalled
        down = cli("status", "--data-dir", str(data), env_extra={"MODELMON_URL": ""})
        assert "127.0.0.1:9" not in down.stdout + down.stderr
    finally:
        other.kill()
        other.wait()


def test_detach_status_queries_handles_and_stop(short_tmp):
    data = short_tmp / "cli"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out = cli(
        "start",
        "--detach",
        "--data-dir",
        str(data),
        "--port",
        str(port),
        "--base-period",
        "30s",
        "--allowed-lateness",
        "1s",
        "--tick-interval",
        "0.5s",
        "--set",
        "ray.include_dashboard=false",
        "--set",
        "storage.lmdb_map_size=128MiB",
    )
    assert out.returncode == 0, out.stderr + out.stdout
    try:
        info = json.loads((data / "daemon.json").read_text())
        assert info["url"] == url
        status = cli("status", "--url", url, "--data-dir", str(data))
        assert status.returncode == 0 and "ok" in status.stdout
        assert "\nlog " not in status.stdout  # nothing committed yet
        assert (
            http(
                "POST",
                url + "/v1/endpoints",
                {
                    "uid": "cli-ep",
                    "project": "p",
                    "name": "n",
                    "feature_names": ["x"],
                    "reference": {"rows": [[float(i)] for i in range(100)]},
                },
                token=(data / "auth_token").read_text().strip(),
            )[0]
            == 201
        )
        start = (math.floor(time.time() / 30) - 2) * 30
        assert (
            http(
                "POST",
                url + "/v1/endpoints/cli-ep/events",
                {
                    "inputs": [[float(i)] for i in range(50)],
                    "timestamps": [start + i * 0.1 for i in range(50)],
                },
                token=(data / "auth_token").read_text().strip(),
            )[0]
            == 202
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            res = cli("results", "cli-ep", "--url", url, "--data-dir", str(data), "--json")
            if res.returncode == 0 and json.loads(res.stdout):
                break
            time.sleep(0.5)
        rows = json.loads(res.stdout)
        drift = {r["name"] for r in rows if r["application"] == "histogram-data-drift"}
        assert drift == {"general_drift", "hellinger_mean", "kld_mean", "tvd_mean"}
        table = cli("results", "cli-ep", "--url", url, "--data-dir", str(data), "--since", "1h")
        assert "general_drift" in table.stdout and "START" in table.stdout
        listing = cli("endpoints", "--url", url, "--data-dir", str(data))
        assert "cli-ep" in listing.stdout and "UID" in listing.stdout
        # the registration and the events post: two durable requests, one commit each
        status = cli("status", "--url", url, "--data-dir", str(data))
        assert "\nlog         2 requests durable in 2 commits (1.0 a commit" in status.stdout
        # the data dir alone finds its daemon on another port than the default
        assert info["host"] == "127.0.0.1" and info["port"] == port
        found = cli("endpoints", "--data-dir", str(data), env_extra={"MODELMON_URL": ""})
        assert found.returncode == 0, found.stderr
        assert "cli-ep" in found.stdout and "UID" in found.stdout
        # a file it cannot write, a wrong token: one line each, naming what is wrong
        nowhere = short_tmp / "no-such-folder" / "report.html"
        report = cli(
            "report", "cli-ep", "--out", str(nowhere), "--url", url, "--data-dir", str(data)
        )
        assert report.returncode == 1 and report.stdout == ""
        assert report.stderr.strip() == f"modelmon-daemon: {nowhere}: No such file or directory"
        wrong = cli("status", "--url", url, "--token", "-wrong")  # a leading dash too
        assert wrong.returncode == 1 and wrong.stdout == ""
        assert wrong.stderr.startswith("modelmon-daemon: HTTP 401: missing or wrong bearer token")

        # live Ray handles from another Python process
        script = textwrap.dedent(f"""
            import json, ray, modelmon_daemon
            h = modelmon_daemon.connect({str(data)!r})
            stream = h.stream("cli-ep")
            ops = ray.get(stream.operational.remote(["cli-ep"]))
            from modelmon_daemon.actors.remote import all_actor_names
            print(json.dumps({{"status": h.status(), "ops": ops, "names": all_actor_names()}}))
        """)
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = str(ROOT)
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=ROOT,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        seen = json.loads(done.stdout.strip().splitlines()[-1])
        assert seen["status"]["endpoints"] == 1
        assert seen["ops"]["cli-ep"]["events_total"] == 50
        assert {"controller", "writer", "app:0", "stream:cli-ep"} <= set(seen["names"])

        # a second daemon asked for the same port: one line naming it, and nothing of
        # the running one taken for its own
        other = short_tmp / "cli-other"
        again = cli("start", "--detach", "--data-dir", str(other), "--port", str(port))
        assert again.returncode == 1 and "Traceback" not in again.stderr
        assert again.stderr.strip().startswith(
            f"modelmon-daemon: cannot listen on 127.0.0.1:{port}: Address already in use"
        )
        assert not (other / "daemon.json").exists()
        # a second daemon on the data dir in use: refused, the running one untouched
        pid = json.loads((data / "daemon.json").read_text())["pid"]
        same = cli("start", "--detach", "--data-dir", str(data), "--port", str(free_port()))
        assert same.returncode == 1 and "Traceback" not in same.stderr
        assert f"modelmon-daemon: a daemon (pid {pid}) already runs on {data}" in same.stderr
        assert json.loads((data / "daemon.json").read_text())["pid"] == pid
        assert cli("status", "--url", url, "--data-dir", str(data)).returncode == 0
    finally:
        stopped = cli("stop", "--data-dir", str(data))
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert not (data / "daemon.json").exists()
    assert cli("status", "--url", url, "--data-dir", str(data)).returncode == 1
    down = cli("endpoints", "--url", url, "--data-dir", str(data))
    assert down.returncode == 1 and "Traceback" not in down.stderr
    assert down.stderr.strip() == (
        f"modelmon-daemon: cannot reach the daemon at {url}: [Errno 111] Connection refused"
    )


def test_demo_shows_detected_for_the_shifted_endpoint_only():
    port = free_port()
    out = cli("demo", "--port", str(port), "--windows", "4", timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    status = {
        line.split()[0]: line.split("drift_status=")[1]
        for line in out.stdout.splitlines()
        if "drift_status=" in line
    }
    assert status == {"churn": "no_detection", "fraud": "detected", "pricing": "no_detection"}


def test_alerts_from_the_command_line(daemon, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{\n  "name": "x",\n  "severity": high\n}\n')
    out = daemon.cli("alerts", "create", "--file", str(bad))
    assert out.returncode == 2 and f"{bad}:3:" in out.stderr
    good = tmp_path / "alert.toml"
    good.write_text(
        'name = "cli-alert"\nseverity = "low"\n'
        'entities = { kind = "model-endpoint-result", ids = ["*"] }\n'
        'trigger = { events = ["system-performance-detected"] }\n'
    )
    out = daemon.cli("alerts", "create", "--file", str(good))
    assert out.returncode == 0, out.stderr
    listing = daemon.cli("alerts")
    assert "cli-alert" in listing.stdout and "system-performance-detected" in listing.stdout
    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"name": "y", "entities": {"ids": ["*"]}, "trigger": {"events": ["nope"]}}')
    out = daemon.cli("alerts", "create", "--file", str(invalid))
    assert out.returncode == 1 and "trigger.events[0]" in out.stderr
    out = daemon.cli("alerts", "reset", "cli-alert")
    assert out.returncode == 0 and "0 active entities reset" in out.stdout
    assert daemon.cli("alerts", "events", "cli-alert").returncode == 0
    assert daemon.cli("alerts", "delete", "cli-alert").returncode == 0
    assert "cli-alert" not in daemon.cli("alerts").stdout


def test_a_bad_since_is_one_line_naming_the_flag(daemon):
    out = daemon.cli("results", "any-endpoint", "--since", "yesterday")
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.strip() == (
        "modelmon-daemon: --since: not a duration: 'yesterday' (use e.g. 30s, 10m, 1h, 1h30m)"
    )


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode(errors="replace").partition("=")[::2] for item in raw if item)


def _descendants(root: int) -> list[int]:
    """Every process started from `root`, at any depth (Ray's workers among them, in
    sessions of their own)."""
    children: dict[int, list[int]] = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                stat = Path(f"/proc/{name}/stat").read_text()
            except OSError:
                continue
            children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _live(root: int) -> list[int]:
    """The descendants of `root` whose command line can still be read."""
    found = []
    for pid in _descendants(root):
        try:
            _cmdline(pid)
        except OSError:
            continue
        found.append(pid)
    return found


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")


def test_huge_pages_reach_the_daemon_and_its_ingestion_actors_unless_turned_off(daemon, short_tmp):
    """The daemon's own process and its stream actors start with the tunable; Ray's other
    processes, the writer and the application actors among them, start without it."""
    from modelmon_daemon.core.huge_pages import (
        glibc_version,
        thp_mode,
        tunables_with_huge_pages,
        tunables_without_huge_pages,
    )

    expected = tunables_with_huge_pages(os.environ, glibc_version(), thp_mode())
    own = os.environ.get("GLIBC_TUNABLES")
    without = tunables_without_huge_pages(expected) if expected else own
    # the shared daemon runs with the default (on): same pid, the tunable in its environment
    assert daemon.proc is not None
    info = json.loads((daemon.data_dir / "daemon.json").read_text())
    assert info["pid"] == daemon.proc.pid
    assert _environ(daemon.proc.pid).get("GLIBC_TUNABLES") == (expected or own)
    # a stream actor to look at: an endpoint's first event makes one
    status, _ = daemon.post(
        "/v1/events",
        {
            "model_endpoint_uid": "huge-pages",
            "model_endpoint_name": "huge-pages",
            "inputs": {"a": [1.0, 2.0]},
            "outputs": [0, 1],
        },
    )
    assert status == 202
    deadline = time.time() + 30  # the endpoint's stream actor starts in the background
    while not any(_cmdline(p).startswith("ray::StreamActor") for p in _live(daemon.proc.pid)):
        assert time.time() < deadline, "no stream actor started"
        time.sleep(0.2)
    pids = _descendants(daemon.proc.pid)
    assert len(pids) > 3  # the daemon, its raylet, GCS and workers
    kinds: set[str] = set()
    for pid in pids:
        if pid == daemon.proc.pid:
            continue
        try:
            env, name = _environ(pid), _cmdline(pid)
        except OSError:
            continue
        ingestion = name.startswith("ray::stream:") or name.startswith("ray::StreamActor")
        assert env.get("GLIBC_TUNABLES") == (expected or own if ingestion else without), name
        kinds.add("StreamActor" if ingestion else name.removeprefix("ray::").split(".")[0])
    assert {"WriterActor", "ApplicationActor", "ControllerActor", "StreamActor"} <= kinds, kinds
    off = Daemon(short_tmp / "no-huge-pages", free_port(), ["--set", "daemon.huge_pages=false"])
    try:
        off.start()
        assert off.proc is not None
        assert _environ(off.proc.pid).get("GLIBC_TUNABLES") == own
    finally:
        off.stop()


def test_the_port_listens_before_ray_starts_and_an_early_request_is_answered(short_tmp):
    """The daemon holds its port from start-up on (Ray's processes, which bind ports of
    their own, cannot take it): a client connects before Ray is up and the daemon serves,
    and its request is answered once the daemon is ready."""
    daemon = Daemon(short_tmp / "early", free_port(), [])
    proc = daemon.spawn()
    try:
        deadline = time.time() + 60
        while True:
            assert proc.poll() is None, daemon.log.read_text()[-2000:]
            assert time.time() < deadline, "the port never listened"
            try:
                early = socket.create_connection(("127.0.0.1", daemon.port), timeout=1)
                break
            except OSError:
                time.sleep(0.05)
        log_then = daemon.log.read_text()
        assert "ray up in" not in log_then and not (daemon.data_dir / "daemon.json").exists()
        with early:
            early.settimeout(120)
            early.sendall(
                f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1:{daemon.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            answer = b""
            while chunk := early.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
        assert "ray up in" in daemon.log.read_text()  # answered after Ray started
    finally:
        daemon.stop()


def test_a_new_base_period_waits_for_the_logged_windows_and_says_so(short_tmp):
    """Logged records are windowed by the period they were logged with: a detached start
    with another period while some wait fails in one line that says why (the child's
    reason, not only "see the log"), and the old period starts again."""
    data, port = short_tmp / "period", free_port()
    daemon = Daemon(data, port, [], lateness="1h").start()
    try:
        endpoint = {"uid": "pe", "project": "p", "name": "pe", "feature_names": ["x"]}
        assert daemon.post("/v1/endpoints", endpoint)[0] == 201
        start = (math.floor(time.time() / 30) - 2) * 30
        body = {"inputs": [[1.0], [2.0]], "outputs": [0, 1], "timestamps": [start, start + 1]}
        assert daemon.post("/v1/endpoints/pe/events", body)[0] == 202
    finally:
        daemon.stop()
    flags = ["--port", str(free_port()), "--base-period", "1m"]
    out = cli("start", "--detach", "--data-dir", str(data), *flags, timeout=120)
    assert out.returncode == 1 and "Traceback" not in out.stderr, out.stderr
    first, second = out.stderr.strip().splitlines()
    assert first.startswith(
        "modelmon-daemon: windows.base_period changed from 30s to 1m while 1 logged records "
        "wait for their windows; start once more with --base-period 30s"
    )
    assert second.startswith("modelmon-daemon: start failed (exit 1); see ")
    daemon = Daemon(data, port, [], lateness="1h").start()  # the old period: it starts
    try:
        _, endpoint = daemon.get("/v1/endpoints/pe")
        assert endpoint["events_total"] == 2
    finally:
        daemon.stop()
