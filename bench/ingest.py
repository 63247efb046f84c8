"""Ingestion throughput on loopback: the daemon beside a no-op aiohttp server, same run.

Single MLRun events (one per request) and 1000-event batches (native columnar form and
MLRun lists), posted by an aiohttp client with 32 connections for a few seconds each.
Every daemon 202 means the events are durable in the LMDB log. Prints requests/s,
events/s and the ratio to the no-op server (which reads the body and answers 202).
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

import aiohttp
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONNECTIONS = 32

NOOP = textwrap.dedent(
    """
    import sys
    from aiohttp import web

    async def accept(request):
        await request.read()
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


async def wait_up(url: str, wait_s: float = 120) -> None:
    deadline = time.time() + wait_s
    async with aiohttp.ClientSession() as session:
        while time.time() < deadline:
            try:
                async with session.get(url) as resp:
                    if resp.status in (200, 404, 405):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.3)
    raise RuntimeError(f"{url} did not come up")


async def load(url: str, body: bytes, seconds: float, token: str = "") -> tuple[float, int]:
    """Requests/s with CONNECTIONS concurrent posters; returns (rate, failures)."""
    connector = aiohttp.TCPConnector(limit=CONNECTIONS)
    done = failures = 0
    stop = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"  # the no-op server ignores it
    async with aiohttp.ClientSession(connector=connector) as session:

        async def worker() -> None:
            nonlocal done, failures
            while time.perf_counter() < stop:
                async with session.post(url, data=body, headers=headers) as resp:
                    await resp.read()
                    if resp.status == 202:
                        done += 1
                    else:
                        failures += 1

        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(CONNECTIONS)))
        elapsed = time.perf_counter() - t0
    return done / elapsed, failures


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
        "1000-event native batch": (
            json.dumps(native).encode(),
            1000,
            "/v1/endpoints/bench/events",
        ),
    }


async def measure(noop_port: int, daemon_url: str, token_file: Path) -> None:
    await wait_up(f"http://127.0.0.1:{noop_port}/")
    await wait_up(daemon_url + "/healthz")
    token = (await asyncio.to_thread(token_file.read_text)).strip()
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as session:
        await session.post(
            daemon_url + "/v1/endpoints",
            json={
                "uid": "bench",
                "project": "bench",
                "name": "bench",
                "feature_names": [f"f{j}" for j in range(8)],
            },
        )
    print(
        f"{CONNECTIONS} connections, {SECONDS:g}s per run, loopback, one machine "
        f"({os.cpu_count()} CPUs shared by client, server and Ray)"
    )
    for name, (body, events, path) in payloads().items():
        base, _ = await load(f"http://127.0.0.1:{noop_port}{path}", body, SECONDS, token)
        ours, failed = await load(daemon_url + path, body, SECONDS, token)
        note = f"   ({failed} non-202)" if failed else ""
        print(
            f"  {name:<24} daemon {ours:9.0f} req/s = {ours * events:10.0f} events/s   "
            f"no-op {base:9.0f} req/s   ratio {ours / base:5.2f}x{note}"
        )


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mmb-", dir="/tmp"))
    noop_port, daemon_port = free_port(), free_port()
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    noop = subprocess.Popen([sys.executable, "-c", NOOP, str(noop_port)], start_new_session=True)
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
            measure(noop_port, f"http://127.0.0.1:{daemon_port}", tmp / "data" / "auth_token")
        )
    finally:
        for proc in (daemon, noop):
            proc.send_signal(signal.SIGTERM)
        for proc in (daemon, noop):
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    if math.isnan(SECONDS):
        raise SystemExit("BENCH_SECONDS must be a number")
    main()
