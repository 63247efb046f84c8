"""The real daemon as a subprocess, on loopback, with a short base period."""

from __future__ import annotations

import http.client as http_client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from modelmon_daemon.core.daemon_file import read_daemon_file
from tests.ports import free_port

ROOT = Path(__file__).resolve().parents[2]


def http(
    method, url, body=None, content_type="application/json", timeout=30, token=None, headers=None
):
    data = body if isinstance(body, bytes | None) else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None and content_type is not None:
        req.add_header("Content-Type", content_type)
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    for name, value in (headers or {}).items():
        req.add_header(name, value)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw)
        except ValueError:
            return exc.code, raw.decode()


def cli(*args, timeout=180, env_extra=None):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(ROOT)
    for name, value in (env_extra or {}).items():  # None: removed
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return subprocess.run(
        [sys.executable, "-m", "modelmon_daemon", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=ROOT,
    )


class PortTaken(Exception):
    """The daemon could not listen on the port chosen for it."""


class Daemon:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        extra: list[str],
        lateness: str = "2s",
        cwd: Path | None = None,
        env: dict[str, str | None] | None = None,
    ) -> None:
        """`cwd`: start the daemon in that folder, naming the data dir relative to it.
        `env`: variables set for the daemon (None: removed)."""
        self.data_dir, self.port, self.extra, self.lateness = data_dir, port, extra, lateness
        self.cwd, self.env = cwd, env or {}
        self.url = f"http://127.0.0.1:{port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = data_dir.parent / f"{data_dir.name}.log"

    def start(self, timeout: float = 120) -> Daemon:
        """Start the daemon and wait until it answers /healthz. A port that another process
        took since it was chosen (the daemon exits saying "cannot listen on") is replaced
        by a new one, at most twice: the port is the harness's choice, not the test's."""
        for attempt in range(3):
            try:
                return self._start_once(timeout)
            except PortTaken:
                if attempt == 2:
                    raise
                self.port = free_port()
                self.url = f"http://127.0.0.1:{self.port}"
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> Daemon:
        log_start = self.log.stat().st_size if self.log.exists() else 0
        self.spawn()
        assert self.proc is not None
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                tail = self.log.read_bytes()[log_start:].decode(errors="replace")
                if f"cannot listen on 127.0.0.1:{self.port}" in tail:
                    raise PortTaken(self.port)
                raise RuntimeError(f"daemon exited {self.proc.returncode}: {tail[-3000:]}")
            if self._answers_health():
                return self
            time.sleep(0.3)
        raise RuntimeError(f"daemon not healthy: {self.log.read_text()[-3000:]}")

    def spawn(self) -> subprocess.Popen[bytes]:
        """Start the daemon's process, its output appended to the log; not waiting."""
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        env["PYTHONPATH"] = str(ROOT)
        for name, value in self.env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        argv = [
            sys.executable,
            "-m",
            "modelmon_daemon",
            "start",
            "--data-dir",
            os.path.relpath(self.data_dir, self.cwd) if self.cwd else str(self.data_dir),
            "--port",
            str(self.port),
            "--base-period",
            "30s",
            "--allowed-lateness",
            self.lateness,
            "--tick-interval",
            "0.5s",
            "--set",
            "ray.include_dashboard=false",
            "--set",
            "ray.num_cpus=2",
            "--set",
            "storage.lmdb_map_size=256MiB",
            *self.extra,
        ]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.cwd or ROOT,
                start_new_session=True,
            )
        return self.proc

    def _answers_health(self) -> bool:
        """/healthz answered 200 by this daemon: its file in the data dir names its pid.
        Whatever else answers on the port (another process's protocol, another server)
        is not this daemon; it then exits, unable to listen, and start() tells that."""
        try:
            status, _ = http("GET", self.url + "/healthz", timeout=5)
        except (OSError, http_client.HTTPException):
            return False
        if status != 200:
            return False
        announced = read_daemon_file(self.data_dir) or {}
        return self.proc is not None and announced.get("pid") == self.proc.pid

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill9()
        self._reap_group()

    def kill9(self) -> None:
        """kill -9 of the daemon and every process it started (its Ray included)."""
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait(timeout=30)
        self._reap_group()

    def _reap_group(self) -> None:
        if self.proc:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass

    @property
    def token(self) -> str:
        """The daemon's bearer token, written at its first start."""
        return (self.data_dir / "auth_token").read_text().strip()

    def cli(self, *args, **kw):
        """A CLI query command against this daemon (its URL and token)."""
        return cli(*args, "--url", self.url, "--token", self.token, **kw)

    def get(self, path, **kw):
        kw.setdefault("token", self.token)
        return http("GET", self.url + path, **kw)

    def post(self, path, body, **kw):
        kw.setdefault("token", self.token)
        return http("POST", self.url + path, body, **kw)

    def delete(self, path, **kw):
        kw.setdefault("token", self.token)
        return http("DELETE", self.url + path, **kw)

    def wait_for(self, predicate, timeout=60.0, interval=0.3):
        deadline = time.time() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.time() > deadline:
                raise AssertionError(
                    f"timed out waiting; log tail:\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(interval)


@pytest.fixture(scope="session")
def short_tmp():
    path = Path(tempfile.mkdtemp(prefix="mme-", dir="/tmp"))
    yield path


@pytest.fixture(scope="session")
def daemon(short_tmp):
    d = Daemon(
        short_tmp / "shared",
        free_port(),
        [
            "--set",
            "daemon.max_body_size=1MiB",
            "--set",
            "applications.user=tests.unit.failing_app:RowCountApplication,"
            "tests.unit.failing_app:BrokenApplication",
            "--set",
            f"applications.python_path={ROOT}",
            "--set",
            f"daemon.reference_dirs={tempfile.gettempdir()}",
        ],
        lateness="5s",  # room for several requests of one back-filled history
    ).start()
    yield d
    d.stop()
