"""Ingestion throughput on loopback: the daemon beside baseline servers, same run.

Rows (each posted by an aiohttp client with 32 connections for a few seconds):
- single MLRun event per POST vs a no-op aiohttp server (reads the body, answers 202);
- 1000-event native msgpack batch per POST vs a server that only decodes the msgpack;
- 1000-event MLRun-format JSON list per POST vs a server that only decodes the JSON
  (target >= 150k events/s);
- 1000 endpoints x one 1000-row native batch each, vs the single-endpoint batch rate.
Every daemon 202 means the events are durable in the LMDB log; each row also prints the
latency of the answers (p50, p99: from a request's send to its whole answer), the
daemon's beside the baseline's. For each daemon row the
CPU time of the daemon's processes (its own and Ray's) per request is printed too: a
figure that depends less on the shared machine's speed than the rates do
(BENCH_INGEST_BREAKDOWN=1: by process, " system" being the kernel's part of them all),
and beside it the baseline server's CPU per request and the load generator's own (the
client shares the two CPUs: a rate is bound by 2 CPU-s over client + server per request).
Each daemon row also prints the durability log's group commits during it (from
`GET /v1/status`): commits a second, requests a commit and a commit's wall time; a
durable 202 waits for the commit in flight and then its own, so with a fixed number of
connections (BENCH_CONNECTIONS, default 32) the commit's time bounds the single-event rate.
BENCH_INGEST_PROFILE=<folder>: py-spy (raw stacks) of the daemon's own process during each
daemon row, written there, with the row's top functions printed (the rates of a profiled
run are lower: py-spy shares the two CPUs).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import NamedTuple

import aiohttp
import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from fleet import cpu_seconds, cpu_used, py_spy_record  # noqa: E402

from modelmon_daemon.client import AsyncClient  # noqa: E402
from modelmon_daemon.config import load_settings  # noqa: E402
from modelmon_daemon.core.huge_pages import (  # noqa: E402
    glibc_version,
    thp_mode,
    tunables_with_huge_pages,
)

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
BREAKDOWN = bool(os.environ.get("BENCH_INGEST_BREAKDOWN"))  # CPU per request by process
PROFILE = os.environ.get("BENCH_INGEST_PROFILE", "")  # folder for py-spy of the daemon
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "32"))

NOOP = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    import msgpack
    import orjson

    async def accept(request):
        body = await request.read()
        if sys.argv[2] == "decode":  # the decode-only baseline: msgpack -> Python objects
            msgpack.unpackb(body, raw=False)
        elif sys.argv[2] == "json":  # JSON -> Python objects, as the daemon decodes it
            orjson.loads(body)
        return web.json_response({"accepted": 1}, status=202)

    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.router.add_post("/{tail:.*}", accept)
    web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
    """
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_up(url: str, wait_s: float = 120, ok: tuple[int, ...] = (200, 404, 405)) -> None:
    """Until `url` answers with one of `ok` (the daemon's /healthz: 200 only, so a port
    another process took meanwhile is not mistaken for it)."""
    deadline = time.time() + wait_s
    async with aiohttp.ClientSession() as session:
        while time.time() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status in ok:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


class LoadResult(NamedTuple):
    rate: float  # requests a second
    failures: int  # answers other than 202
    p50_ms: float  # a request's time from its send to its whole answer
    p99_ms: float
    client_cpu_us: float  # the load generator's own CPU per request (this process)
    requests: int = 1  # answered, whatever their status
    # CPU seconds of the server's processes by name (" system": the kernel's part of them
    # all), if measured
    server_cpu: dict[str, float] | None = None

    @property
    def server_cpu_us(self) -> float:
        """The server's processes' CPU per request (their kernel time included)."""
        if self.server_cpu is None:
            return math.nan
        return 1e6 * sum(v for k, v in self.server_cpu.items() if k != " system") / self.requests


async def load(
    url: str | list[str],
    body: bytes,
    seconds: float,
    token: str = "",
    content_type: str = "application/json",
    server_pid: int = 0,
) -> LoadResult:
    """Requests/s with CONNECTIONS concurrent posters (cycling through `url` when it is a
    list), the latency of their answers (for the daemon: of a durable 202), and the CPU
    a request took the client and (`server_pid`: its process group) the server: on two
    shared CPUs the rate is bound by their sum."""
    server_before = cpu_seconds(server_pid) if server_pid else {}
    client_before = time.process_time()
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    done = failures = 0
    stop = time.perf_counter() + seconds
    headers = {"Content-Type": content_type}
    if token:
        headers["Authorization"] = f"Bearer {token}"  # the baseline servers ignore it
    urls = [url] if isinstance(url, str) else url
    turn = 0
    latencies: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, failures, turn
            while time.perf_counter() < stop:
                target = urls[turn % len(urls)]
                turn += 1
                sent = time.perf_counter()
                async with session.post(target, data=body, headers=headers) as resp:
                    await resp.read()
                    latencies.append(time.perf_counter() - sent)
                    if resp.status == 202:
                        done += 1
                    else:
                        failures += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - t0
    client = time.process_time() - client_before
    server = cpu_used(server_before, cpu_seconds(server_pid)) if server_pid else None
    p50, p99 = np.percentile(latencies, [50, 99]) * 1e3 if latencies else (math.nan, math.nan)
    requests = max(1, done + failures)
    return LoadResult(
        done / elapsed, failures, float(p50), float(p99), 1e6 * client / requests, requests, server
    )


async def log_stats(daemon_url: str, token: str) -> dict[str, float]:
    """The daemon's durability-log statistics (`GET /v1/status`, `log`)."""
    async with AsyncClient(daemon_url, token=token) as client:
        status = await client.status()
    return dict(status["log"])


def payloads() -> dict[str, tuple[bytes, int, str]]:
    rng = np.random.default_rng(0)
    now = time.time()
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(now)) + ".000000"

    def event(i: int) -> dict:
        return {
            "class": "M",
            "model": "bench",
            "version": "v1",
            "function_uri": "bench/serving",
            "request": {"id": f"r{i}", "inputs": [rng.normal(size=8).round(4).tolist()]},
            "resp": {"id": f"r{i}", "outputs": [1]},
            "when": when,
            "microsec": 900,
        }

    native = {
        "inputs": rng.normal(size=(1000, 8)).round(4).tolist(),
        "outputs": rng.integers(0, 2, 1000).tolist(),
        "latency_us": [900] * 1000,
    }
    return {
        "single MLRun event": (json.dumps(event(0)).encode(), 1, "/v1/events"),
        "1000-event MLRun list": (
            json.dumps([event(i) for i in range(1000)]).encode(),
            1000,
            "/v1/events",
        ),
        "1000-event native msgpack batch": (
            msgpack.packb(native, use_bin_type=True),
            1000,
            "/v1/endpoints/bench/events",
        ),
    }


FLEET = 1000


async def measure(
    ports: dict[str, int],
    pids: dict[str, int],
    daemon_url: str,
    token_file: Path,
    daemon_pid: int,
) -> None:
    async def ours(
        url: str | list[str], body: bytes, token: str, content_type: str = "application/json"
    ) -> LoadResult:
        """The daemon's load result, its processes' CPU measured."""
        rows_run.append(url)
        spy = start_profile(daemon_pid, len(rows_run), url, content_type) if PROFILE else None
        logged = await log_stats(daemon_url, token)
        t0 = time.perf_counter()
        result = await load(url, body, SECONDS, token, content_type, server_pid=daemon_pid)
        elapsed = time.perf_counter() - t0
        now_logged = await log_stats(daemon_url, token)
        commits = now_logged["commits"] - logged["commits"]
        if commits:
            requests_logged = now_logged["requests"] - logged["requests"]
            seconds = now_logged["commit_seconds"] - logged["commit_seconds"]
            print(
                f"    durability log: {commits / elapsed:.0f} commits a second, "
                f"{requests_logged / commits:.1f} requests a commit, "
                f"{1e3 * seconds / commits:.2f} ms a commit (wall, fsync included)"
            )
        if spy is not None:
            print(await asyncio.to_thread(stop_profile, *spy))
        used = result.server_cpu or {}
        if BREAKDOWN:
            print(
                "    CPU us/request by process:",
                ", ".join(
                    f"{k.strip()} {1e6 * v / result.requests:.0f}"
                    for k, v in sorted(used.items(), key=lambda kv: -kv[1])
                    if 1e6 * v / result.requests >= 5
                ),
            )
        return result

    rows_run: list[str | list[str]] = []
    for port in ports.values():
        await wait_up(f"http://127.0.0.1:{port}/")
    await wait_up(daemon_url + "/healthz", ok=(200,))
    token = (await asyncio.to_thread(token_file.read_text)).strip()
    features = [f"f{j}" for j in range(8)]
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        for uid in ["bench", *(f"fleet{i}" for i in range(FLEET))]:
            async with session.post(
                daemon_url + "/v1/endpoints",
                json={"uid": uid, "project": "bench", "name": uid, "feature_names": features},
            ) as resp:
                assert resp.status in (200, 201), await resp.text()
        # stream actors are made in the background: measure once they all exist
        deadline = time.time() + 600
        while time.time() < deadline:
            async with session.get(daemon_url + "/v1/status") as resp:
                status = await resp.json()
            if status.get("controller", {}).get("endpoints", 0) >= FLEET + 1:
                break
            await asyncio.sleep(1.0)
        await asyncio.sleep(2.0)
    print(
        f"{CONNECTIONS} connections, {SECONDS:g}s per run, loopback, one machine "
        f"({os.cpu_count()} CPUs shared by client, server and Ray)"
    )
    rows = payloads()
    body, _, path = rows["single MLRun event"]
    base = await load(
        f"http://127.0.0.1:{ports['noop']}{path}", body, SECONDS, server_pid=pids["noop"]
    )
    mine = await ours(daemon_url + path, body, token)
    report("single MLRun event per POST", mine, 1, base, "no-op aiohttp server")
    body, events, path = rows["1000-event native msgpack batch"]
    msgpack_type = "application/msgpack"
    base = await load(
        f"http://127.0.0.1:{ports['decode']}{path}",
        body,
        SECONDS,
        content_type=msgpack_type,
        server_pid=pids["decode"],
    )
    single = await ours(daemon_url + path, body, token, msgpack_type)
    report("1000-event native msgpack batch", single, events, base, "msgpack decode-only")
    body, events, path = rows["1000-event MLRun list"]
    base = await load(
        f"http://127.0.0.1:{ports['json']}{path}", body, SECONDS, server_pid=pids["json"]
    )
    mine = await ours(daemon_url + path, body, token)
    report("1000-event MLRun JSON list", mine, events, base, "JSON decode-only")
    body, events, _ = rows["1000-event native msgpack batch"]
    urls = [f"{daemon_url}/v1/endpoints/fleet{i}/events" for i in range(FLEET)]
    mine = await ours(urls, body, token, msgpack_type)
    report(f"{FLEET} endpoints x 1000-row batch", mine, events, single, "single-endpoint batch")


def start_profile(
    pid: int, row: int, url: str | list[str], content_type: str
) -> tuple[subprocess.Popen[bytes], Path]:
    """py-spy on the daemon's own process (its event loop and the log's commit thread)."""
    folder = Path(PROFILE)
    folder.mkdir(parents=True, exist_ok=True)
    kind = "fleet" if isinstance(url, list) else url.rsplit("/", 1)[-1]
    out = folder / f"daemon-row{row}-{kind}-{content_type.rsplit('/', 1)[-1]}.txt"
    proc = py_spy_record(pid, out, "--threads")
    time.sleep(1.0)  # attached
    return proc, out


def stop_profile(proc: subprocess.Popen[bytes], out: Path, top: int = 10) -> str:
    """Stop py-spy and summarize its stacks per thread (the event loop is MainThread, the
    log's commit thread modelmon-log): the functions holding the most samples, with their
    callees (inclusive) and alone (self)."""
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    threads: dict[str, tuple[dict[str, int], dict[str, int]]] = {}
    totals: dict[str, int] = {}
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        head, *frames = stack.split(";")
        thread = head.split(": ", 1)[-1] if ": " in head else head
        frames = [f.split(" (")[0] for f in frames] or ["(no Python frame)"]
        inclusive, alone = threads.setdefault(thread, ({}, {}))
        totals[thread] = totals.get(thread, 0) + int(count)
        for name in set(frames):
            inclusive[name] = inclusive.get(name, 0) + int(count)
        alone[frames[-1]] = alone.get(frames[-1], 0) + int(count)
    total = max(1, sum(totals.values()))
    lines = [f"    py-spy of the daemon's process ({total} samples, {out}):"]
    for thread, n in sorted(totals.items(), key=lambda kv: -kv[1])[:2]:
        lines.append(f"    {thread}: {100 * n / total:.1f}% of the samples")
        inclusive, alone = threads[thread]
        for title, counts in (("inclusive", inclusive), ("self", alone)):
            # the roots every stack shares (runpy, the CLI, the loop's run) say nothing
            ranked = [kv for kv in counts.items() if title == "self" or kv[1] < 0.8 * n]
            ranked = sorted(ranked, key=lambda kv: -kv[1])[:top]
            shares = ", ".join(f"{k} {100 * v / n:.0f}%" for k, v in ranked)
            lines.append(f"      {title}: {shares}")
    return "\n".join(lines)


def report(
    name: str,
    mine: LoadResult,
    events: int,
    base: LoadResult,
    baseline: str,
) -> None:
    """The row, then the latency of the daemon's answers beside the baseline's."""
    note = f"   ({mine.failures} non-202)" if mine.failures else ""
    against = (
        f"{baseline} {base.rate * events:10.0f} events/s   ratio {mine.rate / base.rate:5.2f}x"
        if base.rate
        else baseline
    )
    cpu_us = mine.server_cpu_us
    cost = "" if math.isnan(cpu_us) else f"   daemon CPU {cpu_us:7.0f} us/request"
    print(
        f"  {name:<34} {mine.rate * events:10.0f} events/s ({mine.rate:7.0f} req/s)   "
        f"{against}{cost}{note}"
    )
    print(
        f"    latency (send to whole answer, {CONNECTIONS} connections): daemon p50 "
        f"{mine.p50_ms:.1f} ms, p99 {mine.p99_ms:.1f} ms; {baseline} p50 {base.p50_ms:.1f} ms, "
        f"p99 {base.p99_ms:.1f} ms"
    )
    server = "" if math.isnan(base.server_cpu_us) else f"{base.server_cpu_us:.0f} us, "
    print(
        f"    CPU per request: the client {mine.client_cpu_us:.0f} us beside the daemon; "
        f"{baseline} {server}its client {base.client_cpu_us:.0f} us"
    )


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mmb-", dir="/tmp"))
    ports = {"noop": free_port(), "decode": free_port(), "json": free_port()}
    daemon_port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    # the baseline servers run with the malloc the daemon gives itself (daemon.huge_pages,
    # resolved as the daemon resolves it: config file, then MODELMON_DAEMON_HUGE_PAGES)
    huge_pages = load_settings(env=env).daemon.huge_pages
    tunables = tunables_with_huge_pages(env, glibc_version(), thp_mode()) if huge_pages else None
    baseline_env = dict(env, GLIBC_TUNABLES=tunables) if tunables else env
    print(f"GLIBC_TUNABLES (daemon and baselines): {tunables or env.get('GLIBC_TUNABLES')}")
    baselines = [
        subprocess.Popen(
            [sys.executable, "-c", NOOP, str(port), kind], start_new_session=True, env=baseline_env
        )
        for kind, port in ports.items()
    ]
    argv = [
        sys.executable,
        "-m",
        "modelmon_daemon",
        "start",
        "--data-dir",
        str(tmp / "data"),
        "--port",
        str(daemon_port),
        "--set",
        "ray.include_dashboard=false",
    ]
    with open(tmp / "daemon.log", "wb") as log:
        daemon = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        asyncio.run(
            measure(
                ports,
                {kind: proc.pid for kind, proc in zip(ports, baselines, strict=True)},
                f"http://127.0.0.1:{daemon_port}",
                tmp / "data" / "auth_token",
                daemon.pid,
            )
        )
    finally:
        for proc in (daemon, *baselines):
            proc.send_signal(signal.SIGTERM)
        for proc in (daemon, *baselines):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if math.isnan(SECONDS):
        raise SystemExit("BENCH_SECONDS must be a number")
    main()
