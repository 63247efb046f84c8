"""A fleet of endpoints through one daemon: registration rate, one tick over all of them,
the floor, and the memory of the daemon's process tree.

For each N (default 100 and 1000; BENCH_FLEET_N=100,1000,10000 for more): N endpoints with
20 numeric features register against one reference Parquet file; each gets one past
window of 1000 rows (native msgpack batches). The controller's loop is paused (live Ray
handles: `modelmon_daemon.connect`, `controller.pause`) until every window is ingested
and idle, then one `update()` analyzes them all with every built-in application: that is
the tick time. The
floor is the same windows' histogram drift (MLRun's numbers) computed in one in-process
numpy pass, measured in the same run; the ratio is tick / floor.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import msgpack
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from modelmon_daemon.analytics.stats import reference_feature_stats  # noqa: E402
from modelmon_daemon.applications.histogram_data_drift import histogram_drift  # noqa: E402

FEATURES = [f"f{j}" for j in range(20)]
ROWS = 1000
P = 30.0
LATENESS = 5.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_rss_mib(pgid: int) -> float:
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


async def register_all(url: str, token: str, n: int, ref: Path) -> float:
    headers = {"Authorization": f"Bearer {token}"}
    sem = asyncio.Semaphore(8)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> None:
            body = {
                "uid": f"ep{i}",
                "project": "fleet",
                "name": f"ep{i}",
                "feature_names": FEATURES,
                "reference": {"path": str(ref)},
            }
            async with sem, session.post(url + "/v1/endpoints", json=body) as resp:
                if resp.status not in (200, 201):
                    raise RuntimeError(f"register ep{i}: {resp.status} {await resp.text()}")

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def post_all(url: str, token: str, windows: list[np.ndarray], start: float) -> float:
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/msgpack"}
    stamps = (start + np.linspace(0, P - 1, ROWS)).tolist()
    sem = asyncio.Semaphore(8)
    async with aiohttp.ClientSession(headers=headers) as session:

        async def one(i: int) -> None:
            body = msgpack.packb(
                {
                    "inputs": {name: windows[i][:, j].tolist() for j, name in enumerate(FEATURES)},
                    "timestamps": stamps,
                }
            )
            async with sem, session.post(url + f"/v1/endpoints/ep{i}/events", data=body) as resp:
                if resp.status != 202:
                    raise RuntimeError(f"post ep{i}: {resp.status} {await resp.text()}")

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(windows))))
        return len(windows) * ROWS / (time.perf_counter() - t0)


def wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.time() + 180
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(log.read_text()[-3000:])
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=5) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError("daemon not healthy")


def wait_buffered(url: str, token: str, rows: int, timeout: float = 600.0) -> None:
    import json
    import urllib.request

    deadline = time.time() + timeout
    while time.time() < deadline:
        buffered, offset, total = 0, 0, 1
        while offset < total:
            request = urllib.request.Request(
                url + f"/v1/endpoints?limit=10000&offset={offset}",
                headers={"Authorization": f"Bearer {token}"},
            )
            with urllib.request.urlopen(request, timeout=120) as resp:
                page = json.loads(resp.read())
            total = page["total"]
            offset += len(page["endpoints"]) or total
            buffered += sum(int(r.get("buffered_events") or 0) for r in page["endpoints"])
        if buffered >= rows:
            return
        time.sleep(1.0)
    raise RuntimeError(f"not all {rows} rows reached the stream actors in {timeout:.0f} s")


def run(n: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="mmf-", dir="/tmp"))
    data = tmp / "data"
    rng = np.random.default_rng(n)
    reference = rng.normal(size=(5000, len(FEATURES)))
    ref = tmp / "reference.parquet"
    pq.write_table(pa.table({name: reference[:, j] for j, name in enumerate(FEATURES)}), ref)
    stats = reference_feature_stats(reference, FEATURES)
    windows = [rng.normal(0.2 * (i % 5), 1, size=(ROWS, len(FEATURES))) for i in range(n)]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "modelmon_daemon",
        "start",
        "--data-dir",
        str(data),
        "--port",
        str(port),
        "--base-period",
        f"{P:g}s",
        "--allowed-lateness",
        f"{LATENESS:g}s",
        "--tick-interval",
        "1s",
        "--set",
        "ray.include_dashboard=false",
        "--set",
        f"daemon.reference_dirs={tmp}",
        "--set",
        "storage.lmdb_map_size=4GiB",
    ]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    log_path = tmp / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    try:
        wait_healthy(url, proc, log_path)
        token = (data / "auth_token").read_text().strip()
        import ray

        import modelmon_daemon

        handles = modelmon_daemon.connect(str(data))
        ray.get(handles.controller.pause.remote(3600))
        rss_idle = tree_rss_mib(proc.pid)
        reg_rate = asyncio.run(register_all(url, token, n, ref))
        rss_registered = tree_rss_mib(proc.pid)
        start = (math.floor(time.time() / P) - 3) * P
        ingest_rate = asyncio.run(post_all(url, token, windows, start))
        # stream actors are made in the background (registration does not wait for them):
        # wait until every row is buffered, then until every endpoint is idle
        wait_buffered(url, token, n * ROWS)
        time.sleep(LATENESS + 1.5)  # every endpoint idle: all windows close in one tick
        # controller.max_tick_rows bounds one tick (2M rows by default): a larger backlog
        # takes several ticks in a row; the tick time is their sum
        t0 = time.perf_counter()
        report = ray.get(handles.controller.update.remote())
        ticks = 1
        while report.get("deferred") and ticks < 100:
            more = ray.get(handles.controller.update.remote())
            report["windows"] += more["windows"]
            report["failures"] += more["failures"]
            for phase, seconds in more["seconds"].items():
                report["seconds"][phase] = report["seconds"].get(phase, 0.0) + seconds
            report["deferred"] = more["deferred"]
            ticks += 1
        tick = time.perf_counter() - t0
        if os.environ.get("BENCH_FLEET_DEBUG"):
            print({k: v for k, v in report.items() if k != "failures"}, report["failures"][:5])
        rss_analyzed = tree_rss_mib(proc.pid)
        t0 = time.perf_counter()
        for window in windows:
            histogram_drift(window, FEATURES, stats)
        floor = time.perf_counter() - t0
        ray.get(handles.controller.pause.remote(0))
        ray.shutdown()
        return {
            "n": n,
            "registration_per_s": reg_rate,
            "ingest_rows_per_s": ingest_rate,
            "windows": float(report["windows"]),
            "failures": float(len(report["failures"])),
            "tick_s": tick,
            "ticks": float(ticks),
            **{f"phase_{k}": v for k, v in report["seconds"].items()},
            "floor_s": floor,
            "rss_idle": rss_idle,
            "rss_registered": rss_registered,
            "rss_analyzed": rss_analyzed,
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    sizes = [int(v) for v in os.environ.get("BENCH_FLEET_N", "100,1000").split(",")]
    print(
        f"fleet: {len(FEATURES)} features, {ROWS} rows per window, every built-in application, "
        f"{os.cpu_count()} CPUs shared by client, daemon and Ray"
    )
    for n in sizes:
        r = run(n)
        per_endpoint = (r["rss_analyzed"] - r["rss_idle"]) / n
        print(
            f"  N={n:<6} tick {r['tick_s']:7.2f} s for {r['windows']:.0f} windows "
            f"in {r['ticks']:.0f} tick(s) "
            f"({r['failures']:.0f} failures)   floor {r['floor_s']:6.3f} s   "
            f"ratio {r['tick_s'] / r['floor_s']:6.1f}x   "
            f"register {r['registration_per_s']:6.0f}/s   "
            f"ingest {r['ingest_rows_per_s']:8.0f} rows/s   "
            f"memory {r['rss_idle']:.0f} -> {r['rss_registered']:.0f} -> "
            f"{r['rss_analyzed']:.0f} MiB ({per_endpoint * 1024:.0f} KiB per endpoint)"
        )
        phases = {k[6:]: v for k, v in r.items() if k.startswith("phase_")}
        print("           tick phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))


if __name__ == "__main__":
    main()
