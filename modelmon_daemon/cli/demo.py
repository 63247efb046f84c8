"""`modelmon-daemon demo`: a daemon with a 30 s base period, three endpoints of synthetic
traffic (history of a few windows, sent now), one of them shifting halfway. Prints each
endpoint's drift per window: the shifted one reaches `detected`, the others stay
`no_detection`."""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from modelmon_daemon.client import Client, ClientError
from modelmon_daemon.core.enums import ResultStatus

PERIOD = 30.0
FEATURES = ["age", "income", "score", "tenure"]


def _start(data_dir: Path, port: int) -> subprocess.Popen[bytes]:
    argv = [
        sys.executable,
        "-m",
        "modelmon_daemon",
        "start",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--base-period",
        "30s",
        "--allowed-lateness",
        "3s",
        "--tick-interval",
        "1s",
        "--set",
        "ray.include_dashboard=false",
    ]
    log = open(data_dir / "demo-daemon.log", "ab")  # noqa: SIM115 - lives as long as the daemon
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def run_demo(args: argparse.Namespace) -> int:
    owned = args.data_dir is None
    data_dir = Path(args.data_dir or tempfile.mkdtemp(prefix="modelmon-demo-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"http://127.0.0.1:{args.port}"
    print(f"starting a demo daemon on {url} (data: {data_dir}) ...", flush=True)
    proc = _start(data_dir, args.port)
    client = Client(url, timeout=30)
    try:
        deadline = time.time() + 120
        while True:
            try:
                client.health()
                break
            except (ClientError, OSError):
                if proc.poll() is not None or time.time() > deadline:
                    print(f"daemon did not start; see {data_dir / 'demo-daemon.log'}")
                    return 1
                time.sleep(0.5)
        client = Client(url, timeout=30, data_dir=str(data_dir))  # its token exists now
        rng = np.random.default_rng(7)
        names = {"churn": False, "fraud": True, "pricing": False}
        for name in names:
            reference = rng.normal(50, 10, size=(2000, len(FEATURES)))
            client.register_endpoint(
                uid=f"demo-{name}",
                project="demo",
                name=name,
                feature_names=FEATURES,
                reference=reference,
            )
        windows = args.windows
        first = (math.floor(time.time() / PERIOD) - windows) * PERIOD
        for w in range(windows):
            for name, shifts in names.items():
                shift = 25.0 if shifts and w >= windows // 2 else 0.0
                rows = rng.normal(50 + shift, 10, size=(300, len(FEATURES)))
                ts = first + w * PERIOD + np.sort(rng.uniform(0, PERIOD - 0.001, size=300))
                client.log_events(
                    f"demo-{name}",
                    rows,
                    outputs=rng.integers(0, 2, 300),
                    timestamps=ts,
                    latency_us=rng.integers(800, 3000, 300),
                )
        print(
            f"posted {windows} windows x 300 events to {len(names)} endpoints "
            f"(fraud shifts by +2.5 sd from window {windows // 2 + 1})",
            flush=True,
        )
        want = windows * len(names)
        deadline = time.time() + 90
        while time.time() < deadline:
            done = sum(
                1 for name in names for r in client.results(f"demo-{name}", name="general_drift")
            )
            if done >= want:
                break
            time.sleep(1)
        print()
        print(f"{'endpoint':<10} {'window start (UTC)':<22} {'general_drift':>13}  status")
        for name in names:
            for r in client.results(f"demo-{name}", name="general_drift"):
                status = ResultStatus(r["status"]).name
                print(f"{name:<10} {r['start'][:19]:<22} {r['value']:>13.4f}  {status}")
        print()
        for record in client.endpoints():
            print(f"{record['name']:<10} drift_status={record['drift_status']}")
        return 0
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        if owned:
            shutil.rmtree(data_dir, ignore_errors=True)
