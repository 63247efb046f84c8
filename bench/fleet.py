"""A fleet of endpoints through one daemon: registration rate, one tick over all of them,
the floor, and the memory of the daemon's process tree.

For each N (default 100 and 1000; BENCH_FLEET_N=100,1000,10000 for more): N endpoints with
20 numeric features register against one reference Parquet file; each gets one past
window of 1000 rows (native msgpack batches). The controller's loop is paused (live Ray
handles: `modelmon_daemon.connect`, `controller.pause`) until every window is ingested
and idle, then one `update()` analyzes them all with every built-in application: that is
the tick time. The
floor is the same windows' histogram drift (MLRun's numbers) computed in one in-process
numpy pass, measured in the same run; the ratio is tick / floor. That pass is the daemon's
own vectorized code (all features of a window binned in one call). A second, plainer
floor is printed beside it: the same numbers the way MLRun's application computes them,
`np.histogram` per feature on the reference's edges, then the distances (checked equal to
the first floor's general_drift, window by window, to 1e-12).
BENCH_FLEET_APPS=histogram-data-drift (comma-separated built-in names) runs only those
applications in the tick: with the floor's own application alone, the ratio is what the
daemon adds to the same math (Ray hand-offs, events and results files, the commit).
BENCH_FLEET_REGISTER_ONLY=1 stops after registration (its rate and memory), so N=10000
registers in about a minute without ingesting 10M rows.

Diagnostics: BENCH_FLEET_DEBUG=1 (stages, tick reports, memory per process),
BENCH_FLEET_PROFILE=<folder> (py-spy stacks of the actors during the first tick;
BENCH_FLEET_PROFILE_STREAMS=1 adds the stream actors), BENCH_FLEET_PERF=<file> (`perf
record -a -g` of every CPU during the first tick: the kernel's part),
BENCH_FLEET_TIMELINE=<file> (Ray's task spans, for chrome://tracing), BENCH_FLEET_KEEP=1
(keep the data dir). The CPU time of every daemon process during each of the two ticks
is always printed.
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
from typing import Any

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
IDLE_PROBE_S = 3.0  # before the warm tick: the CPU the daemon uses doing nothing


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tree_pids(pgid: int) -> list[int]:
    """The daemon's processes: its process group, and everything started from those
    (Ray's workers put themselves in sessions of their own)."""
    parents: dict[int, int] = {}
    groups: dict[int, int] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        parents[int(pid)], groups[int(pid)] = int(fields[1]), int(fields[2])
    found = {pid for pid, group in groups.items() if group == pgid}
    grown = True
    while grown:
        more = {pid for pid, parent in parents.items() if parent in found} - found
        found |= more
        grown = bool(more)
    return sorted(found)


def process_name(cmdline: str) -> str:
    """A stable name for a daemon process: Ray retitles a worker with the task it runs
    ("ray::StreamActor", "ray::stream:ep21:StreamActor.ingest_many"), so actors are
    named by their class alone."""
    if cmdline.startswith("ray::"):
        return "ray::" + cmdline[5:].split(".")[0].split(":")[-1]
    return Path(cmdline).name


def cpu_seconds(pgid: int) -> dict[int, tuple[str, float, float]]:
    """CPU time so far of each of the daemon's processes: pid -> (name, user + system,
    system). Compare two with `cpu_used`."""
    tick = os.sysconf("SC_CLK_TCK")
    out: dict[int, tuple[str, float, float]] = {}
    for pid in tree_pids(pgid):
        try:
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        user, system = int(fields[11]) / tick, int(fields[12]) / tick
        out[pid] = (process_name(name), user + system, system)
    return out


def cpu_used(
    before: dict[int, tuple[str, float, float]], after: dict[int, tuple[str, float, float]]
) -> dict[str, float]:
    """CPU seconds used between two snapshots, summed by process name (per pid, so a
    process that changes its title or starts in between is counted once, from zero),
    with " system" the kernel's part of them all."""
    out: dict[str, float] = {}
    for pid, (name, total, system) in after.items():
        _, total_before, system_before = before.get(pid, (name, 0.0, 0.0))
        out[name] = out.get(name, 0.0) + total - total_before
        out[" system"] = out.get(" system", 0.0) + system - system_before
    return out


def pss_kib(pid: int) -> int:
    """A process's proportional set size (shared pages divided among their users)."""
    with open(f"/proc/{pid}/smaps_rollup") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("Pss:"))


def tree_rss_mib(pgid: int) -> float:
    """Proportional set size of the daemon's process tree: pages shared between its
    processes (Ray's object store, mapped by every worker) counted once, not per process."""
    total = 0
    for pid in tree_pids(pgid):
        try:
            total += pss_kib(pid)
        except (OSError, StopIteration, ValueError):
            continue
    return total / 1024


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
            async with sem:  # the body made once a poster is free: 10,000 bodies made up
                # front would hold the loop for a minute, past the first posts' timeouts
                body = msgpack.packb(
                    {
                        "inputs": {
                            name: windows[i][:, j].tolist() for j, name in enumerate(FEATURES)
                        },
                        "timestamps": stamps,
                    }
                )
                while True:  # as a client should: 429/503 mean "again after Retry-After"
                    async with session.post(url + f"/v1/endpoints/ep{i}/events", data=body) as resp:
                        if resp.status == 202:
                            return
                        if resp.status not in (429, 503):
                            raise RuntimeError(f"post ep{i}: {resp.status} {await resp.text()}")
                        await asyncio.sleep(float(resp.headers.get("Retry-After", "1")))

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(len(windows))))
        return len(windows) * ROWS / (time.perf_counter() - t0)


def tree_breakdown(pgid: int) -> list[tuple[str, float]]:
    """(process name, PSS MiB) of the daemon's processes, largest first."""
    out = []
    for pid in tree_pids(pgid):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0].decode(errors="replace")[:40]
            pss = pss_kib(pid) / 1024
        except (OSError, StopIteration, ValueError):
            continue
        out.append((name, round(pss)))
    return sorted(out, key=lambda item: -item[1])


def py_spy_record(pid: int, out: Path, *options: str) -> subprocess.Popen[bytes]:
    """py-spy's raw stacks of `pid` into `out`, 200 samples a second without pausing the
    process, until SIGINT."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    args = [spy, "record", "-p", str(pid), "-f", "raw", "-o", str(out), "--nonblocking"]
    return subprocess.Popen(
        [*args, "-r", "200", *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def profile_actors(pgid: int, out: Path) -> list[subprocess.Popen[bytes]]:
    """py-spy (raw stacks) on the writer, controller and application actors of the daemon
    started as `pgid`, until stopped: BENCH_FLEET_PROFILE=<folder>."""
    out.mkdir(parents=True, exist_ok=True)
    spies = []
    for pid in map(str, tree_pids(pgid)):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        kinds = ["WriterActor", "ControllerActor", "ApplicationActor"]
        if os.environ.get("BENCH_FLEET_PROFILE_STREAMS"):
            kinds.append("StreamActor")
        for actor in kinds:
            if name.startswith(f"ray::{actor}"):
                spies.append(py_spy_record(int(pid), out / f"{actor}-{pid}.txt"))
    time.sleep(1.0)  # py-spy attached
    return spies


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


def per_feature_drift(window: np.ndarray, stats: dict[str, Any]) -> float:
    """general_drift the plain way (MLRun's: np.histogram per feature, DESIGN's formulas)."""
    tvds, hellingers = [], []
    for j, name in enumerate(FEATURES):
        counts, edges = stats[name]["hist"]
        u = np.asarray(counts, dtype=np.float64)
        u = u / u.sum()
        t = np.histogram(window[:, j], bins=np.asarray(edges))[0].astype(np.float64)
        t = t / t.sum()
        tvds.append(np.abs(t - u).sum() / 2.0)
        hellingers.append(np.sqrt(max(1.0 - np.sqrt(t * u).sum(), 0.0)))
    return (float(np.mean(hellingers)) + float(np.mean(tvds))) / 2.0


def tick_all(controller: Any) -> dict[str, Any]:
    """Ticks until nothing is deferred: controller.max_tick_rows (2M rows by default)
    bounds one tick, so a larger backlog takes several in a row; the report sums them."""
    import ray

    report: dict[str, Any] = ray.get(controller.update.remote())
    ticks = 1
    while report.get("deferred") and ticks < 100:
        more = ray.get(controller.update.remote())
        report["windows"] += more["windows"]
        report["failures"] += more["failures"]
        for phase, seconds in more["seconds"].items():
            report["seconds"][phase] = report["seconds"].get(phase, 0.0) + seconds
        report["deferred"] = more["deferred"]
        ticks += 1
    report["ticks"] = ticks
    return report


def run(n: int) -> dict[str, float]:
    tmp = Path(tempfile.mkdtemp(prefix="mmf-", dir="/tmp"))
    data = tmp / "data"
    rng = np.random.default_rng(n)
    reference = rng.normal(size=(5000, len(FEATURES)))
    ref = tmp / "reference.parquet"
    pq.write_table(pa.table({name: reference[:, j] for j, name in enumerate(FEATURES)}), ref)
    stats = reference_feature_stats(reference, FEATURES)
    register_only = bool(os.environ.get("BENCH_FLEET_REGISTER_ONLY"))
    windows = (
        []
        if register_only
        else [rng.normal(0.2 * (i % 5), 1, size=(ROWS, len(FEATURES))) for i in range(n)]
    )
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
    if os.environ.get("BENCH_FLEET_APPS"):
        argv += ["--set", f"applications.builtin={os.environ['BENCH_FLEET_APPS']}"]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    log_path = tmp / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True
        )
    debug = bool(os.environ.get("BENCH_FLEET_DEBUG"))

    def stage(text: str) -> None:
        if debug:
            print(f"  [{time.strftime('%H:%M:%S')}] {text}", flush=True)

    try:
        wait_healthy(url, proc, log_path)
        token = (data / "auth_token").read_text().strip()
        import ray

        import modelmon_daemon

        handles = modelmon_daemon.connect(str(data))
        ray.get(handles.controller.pause.remote(3600))
        rss_idle = tree_rss_mib(proc.pid)
        stage("registering")
        reg_rate = asyncio.run(register_all(url, token, n, ref))
        stage(f"registered ({reg_rate:.0f}/s); posting")
        rss_registered = tree_rss_mib(proc.pid)
        if register_only:
            ray.shutdown()
            return {
                "n": n,
                "registration_per_s": reg_rate,
                "rss_idle": rss_idle,
                "rss_registered": rss_registered,
            }
        start = (math.floor(time.time() / P) - 3) * P
        ingest_rate = asyncio.run(post_all(url, token, windows, start))
        # stream actors are made in the background (registration does not wait for them):
        # wait until every row is buffered, then until every endpoint is idle
        stage(f"posted ({ingest_rate:.0f} rows/s); waiting for the stream actors")
        wait_buffered(url, token, n * ROWS)
        stage("buffered; ticking")
        time.sleep(LATENESS + 1.5)  # every endpoint idle: all windows close in one tick
        # controller.max_tick_rows bounds one tick (2M rows by default): a larger backlog
        # takes several ticks in a row; the tick time is their sum
        spies = []
        if os.environ.get("BENCH_FLEET_PROFILE"):
            spies = profile_actors(proc.pid, Path(os.environ["BENCH_FLEET_PROFILE"]))
        perf = None
        if os.environ.get("BENCH_FLEET_PERF"):  # the kernel's side too: perf, every CPU
            perf = subprocess.Popen(
                ["perf", "record", "-a", "-g", "-o", os.environ["BENCH_FLEET_PERF"]],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            time.sleep(1.0)
        cold_before = cpu_seconds(proc.pid)
        t0 = time.perf_counter()
        report = tick_all(handles.controller)
        tick = time.perf_counter() - t0
        cold_cpu = cpu_used(cold_before, cpu_seconds(proc.pid))
        if perf is not None:
            perf.send_signal(signal.SIGINT)
            perf.wait(timeout=60)
        for spy in spies:
            spy.send_signal(signal.SIGINT)
            spy.wait(timeout=30)
        if os.environ.get("BENCH_FLEET_DEBUG"):
            print({k: v for k, v in report.items() if k != "failures"}, report["failures"][:5])
        rss_analyzed = tree_rss_mib(proc.pid)
        # the next window of every endpoint: a tick with every cache warm (endpoint
        # records in the application actors and the writer), as a running daemon sees
        # (the first tick moved every frontier to the open window: post into that one,
        # and tick once it has closed)
        if time.time() % P > P / 2:  # not enough of this window left to post it all
            time.sleep(P - time.time() % P + 0.1)
        current = math.floor(time.time() / P) * P
        asyncio.run(post_all(url, token, windows, current))
        wait_buffered(url, token, n * ROWS)
        time.sleep(max(0.0, current + P + LATENESS + 1.5 - time.time()))
        idle_before = cpu_seconds(proc.pid)  # what the processes use doing nothing
        time.sleep(IDLE_PROBE_S)
        cpu_before = cpu_seconds(proc.pid)
        idle_cpu = cpu_used(idle_before, cpu_before)
        t0 = time.perf_counter()
        warm_report = tick_all(handles.controller)
        warm = time.perf_counter() - t0
        cpu_after = cpu_seconds(proc.pid)
        warm_cpu = cpu_used(cpu_before, cpu_after)
        if os.environ.get("BENCH_FLEET_DEBUG"):
            print(tree_breakdown(proc.pid))
        if os.environ.get("BENCH_FLEET_TIMELINE"):  # Ray's task spans, for chrome://tracing
            ray.timeline(filename=os.environ["BENCH_FLEET_TIMELINE"])
        t0 = time.perf_counter()
        ours = [histogram_drift(window, FEATURES, stats) for window in windows]
        floor = time.perf_counter() - t0
        t0 = time.perf_counter()
        plain = [per_feature_drift(window, stats) for window in windows]
        plain_floor = time.perf_counter() - t0
        for k, (drift, value) in enumerate(zip(ours, plain, strict=True)):
            if drift is None or abs(drift.general_drift - value) > 1e-12:
                raise AssertionError(f"window {k}: general_drift {drift} != {value}")
        controller_status = ray.get(handles.controller.status.remote())
        ray.get(handles.controller.pause.remote(0))
        ray.shutdown()
        return {
            "n": n,
            "stream_actors": float(len(controller_status["stream_actors"])),
            "registration_per_s": reg_rate,
            "ingest_rows_per_s": ingest_rate,
            "windows": float(report["windows"]),
            "failures": float(len(report["failures"])),
            "tick_s": tick,
            "warm_tick_s": warm,
            "warm_windows": float(warm_report["windows"]),
            **{f"warm_phase_{k}": v for k, v in warm_report["seconds"].items()},
            "ticks": float(report["ticks"]),
            **{f"phase_{k}": v for k, v in report["seconds"].items()},
            "floor_s": floor,
            "plain_floor_s": plain_floor,
            "rss_idle": rss_idle,
            "rss_registered": rss_registered,
            "rss_analyzed": rss_analyzed,
            **{f"warm_cpu_{k}": v for k, v in warm_cpu.items() if v >= 0.01},
            **{f"cold_cpu_{k}": v for k, v in cold_cpu.items() if v >= 0.01},
            **{f"idle_cpu_{k}": v for k, v in idle_cpu.items() if v >= 0.01},
        }
    except BaseException:
        import traceback

        traceback.print_exc()
        sys.stdout.flush()
        raise
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
        if os.environ.get("BENCH_FLEET_KEEP"):
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    sizes = [int(v) for v in os.environ.get("BENCH_FLEET_N", "100,1000").split(",")]
    print(
        f"fleet: {len(FEATURES)} features, {ROWS} rows per window, "
        f"{os.environ.get('BENCH_FLEET_APPS') or 'every built-in application'}, "
        f"{os.cpu_count()} CPUs shared by client, daemon and Ray"
    )
    for n in sizes:
        r = run(n)
        if "tick_s" not in r:  # BENCH_FLEET_REGISTER_ONLY
            print(
                f"  N={n:<6} register {r['registration_per_s']:6.0f}/s   memory (PSS) "
                f"{r['rss_idle']:.0f} -> {r['rss_registered']:.0f} MiB"
            )
            continue
        per_endpoint = (r["rss_analyzed"] - r["rss_idle"]) / n
        print(
            f"  N={n:<6} tick {r['tick_s']:7.2f} s for {r['windows']:.0f} windows "
            f"in {r['ticks']:.0f} tick(s) "
            f"({r['failures']:.0f} failures)   floor {r['floor_s']:6.3f} s   "
            f"ratio {r['tick_s'] / r['floor_s']:6.1f}x   "
            f"register {r['registration_per_s']:6.0f}/s   "
            f"ingest {r['ingest_rows_per_s']:8.0f} rows/s   "
            f"stream actors {r['stream_actors']:.0f}   "
            f"memory (PSS) {r['rss_idle']:.0f} -> {r['rss_registered']:.0f} -> "
            f"{r['rss_analyzed']:.0f} MiB ({per_endpoint * 1024:.0f} KiB per endpoint)"
        )
        print(
            f"           plain floor (np.histogram per feature, as MLRun's application) "
            f"{r['plain_floor_s']:.3f} s: tick {r['tick_s'] / r['plain_floor_s']:.1f}x, "
            f"next tick {r['warm_tick_s'] / r['plain_floor_s']:.1f}x"
        )
        phases = {k[6:]: v for k, v in r.items() if k.startswith("phase_")}
        print("           tick phases: " + ", ".join(f"{k} {v:.2f} s" for k, v in phases.items()))
        warm = {k[11:]: v for k, v in r.items() if k.startswith("warm_phase_")}
        print(
            f"           next tick, caches warm: {r['warm_tick_s']:.2f} s for "
            f"{r['warm_windows']:.0f} windows (ratio {r['warm_tick_s'] / r['floor_s']:.1f}x): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in warm.items())
        )
        print_cpu("CPU time in the first tick", r, "cold_cpu_")
        idle = {k[9:]: v for k, v in r.items() if k.startswith("idle_cpu_")}
        idle.pop(" system", None)
        print(
            f"           CPU time of {IDLE_PROBE_S:g} s idle just before: "
            f"{sum(idle.values()):.2f} s ("
            + ", ".join(f"{k} {v:.2f}" for k, v in sorted(idle.items(), key=lambda kv: -kv[1]))
            + ")"
        )
        print_cpu("CPU time in the next tick", r, "warm_cpu_")


def print_cpu(title: str, r: dict[str, float], prefix: str) -> None:
    cpu = {k[len(prefix) :]: v for k, v in r.items() if k.startswith(prefix)}
    system = cpu.pop(" system", 0.0)
    print(
        f"           {title}: {sum(cpu.values()):.2f} s, {system:.2f} s of it in the kernel ("
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(cpu.items(), key=lambda kv: -kv[1]))
        + ")"
    )


if __name__ == "__main__":
    main()
