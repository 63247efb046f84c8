"""The running daemon's file in its data dir (`daemon.json`: pid, URL, Ray address),
written once it listens and removed when it stops. The CLI's `stop` and the clients
find the daemon of a data dir through it, so a daemon on another port than the default
is reached by naming its data dir alone."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

DAEMON_FILE = "daemon.json"
DATA_DIR_ENV = "MODELMON_DAEMON_DATA_DIR"
DEFAULT_DATA_DIR = "./modelmon-data"
# the addresses a daemon listens on for every interface, and the one to connect to
_ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def read_daemon_file(data_dir: str | Path) -> dict[str, Any] | None:
    path = Path(data_dir).expanduser() / DAEMON_FILE
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def process_start_ticks(pid: int) -> int | None:
    """When a process started, in clock ticks since the machine booted (Linux's /proc,
    field 22 of its stat): unlike the wall clock, unchanged by clock steps, and together
    with the pid unique to one process until the next boot. None where it cannot be read."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def live_pid(info: dict[str, Any] | None) -> int | None:
    """The pid a daemon file names, if that process is alive and is the one that wrote
    the file (the same start time, `proc_start`). A file left by a daemon that was killed
    (or by one before a reboot) may name a pid the system has given to another process
    since: that one is not the daemon, so `stop` never signals it and `start` is not
    refused. A file holding something else than a pid names none."""
    info = info or {}
    pid = info.get("pid")
    if type(pid) is not int or pid <= 0 or not pid_alive(pid):
        return None
    recorded = info.get("proc_start")
    if type(recorded) is not int:
        return pid  # a file without it (or where /proc is not): the pid alone
    current = process_start_ticks(pid)
    if current is not None and current != recorded:
        return None
    return pid


def http_url(host: str, port: int) -> str:
    """`http://host:port`, an IPv6 literal in brackets."""
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def connect_url(host: str, port: int) -> str:
    """Where a client on this machine reaches a daemon listening on `host`:`port`."""
    return http_url(_ANY_ADDRESS.get(host, host), port)


def client_data_dir(data_dir: str | Path | None = None) -> Path:
    """The data dir a client looks in for the running daemon and its token: `data_dir`,
    else $MODELMON_DAEMON_DATA_DIR, else ./modelmon-data."""
    return Path(data_dir or os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser()


def running_daemon_url(data_dir: str | Path | None = None) -> str | None:
    """The URL of the daemon running on `data_dir` (client_data_dir), or None when no
    live daemon wrote its file there."""
    info = read_daemon_file(client_data_dir(data_dir))
    if not info:
        return None
    host, port = info.get("host"), info.get("port")
    if live_pid(info) is None:
        return None
    if isinstance(host, str) and type(port) is int and 0 < port < 65536:
        return connect_url(host, port)
    return None
