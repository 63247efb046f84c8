"""Transparent huge pages for the daemon's malloc heaps (`daemon.huge_pages`).

Ingestion allocates and copies large buffers (decoded columns, the log's dirty pages
on their way to `writev`, the records the stream actors hold). With 4 KiB pages the
kernel's part of that work (page faults, zeroing, copies out of user memory) was a
third of the daemon's CPU under a fleet of endpoints; glibc's `malloc.hugetlb=1`
tunable makes malloc ask for transparent huge pages (`madvise`), which took the HTTP
process's kernel time per request from ~310 to ~130 µs there, at ~0.6% more memory.
glibc reads its tunables only when a process starts, so `start` sets the variable and
replaces itself (same pid) before doing anything else; Ray's processes, started by
the daemon, inherit it.

Only the ingestion path keeps them: the daemon's own process and the stream actors (and
ingestion servers). The tick's actors (writer, application actors, controller) grow to
a tick's size in their first tick of a fleet, and faulting that in as huge pages
(zeroed 2 MiB at a time, compacted on demand) cost the first tick of 1000 endpoints
~1.5 s more CPU than the next ticks; with no process on huge pages, the first tick cost
what the next one did.
So the restarted daemon hands its children (Ray's processes, which its actors' workers
come from) the tunables without huge pages, and the ingestion actors ask for them back
as their Ray runtime_env (`ingest_runtime_env`). The first actors Ray starts take the
workers it started ahead, which are the tick's; an actor with another environment
gets a process of its own, as stream actors do anyway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Any

TUNABLE = "glibc.malloc.hugetlb"
MIN_GLIBC = (2, 35)  # the first glibc with malloc.hugetlb
THP_MODE_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
RESTARTED = "MODELMON_HUGE_PAGES_RESTARTED"
INGEST_TUNABLES = "MODELMON_INGEST_GLIBC_TUNABLES"  # the ingestion actors' GLIBC_TUNABLES


def glibc_version() -> tuple[int, int] | None:
    try:
        name, _, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").partition(" ")
    except (ValueError, OSError):
        return None
    if name != "glibc":
        return None
    try:
        major, minor = version.split(".")[:2]
        return int(major), int(minor)
    except ValueError:
        return None


def thp_mode(path: Path = THP_MODE_FILE) -> str | None:
    """The kernel's transparent huge page mode ("always", "madvise", "never")."""
    try:
        text = path.read_text()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1 : end] if 0 <= start < end else None


def tunables_with_huge_pages(
    environ: Mapping[str, str], glibc: tuple[int, int] | None, mode: str | None
) -> str | None:
    """The GLIBC_TUNABLES value to start with, or None when nothing would change: the
    tunable is already set (either way: the user's choice stands), glibc is not glibc or
    too old to know it, or the kernel gives no huge pages on request."""
    current = environ.get("GLIBC_TUNABLES", "")
    names = {item.partition("=")[0].strip() for item in current.split(":") if item}
    if TUNABLE in names or glibc is None or glibc < MIN_GLIBC or mode not in ("always", "madvise"):
        return None
    return f"{current}:{TUNABLE}=1" if current else f"{TUNABLE}=1"


def tunables_without_huge_pages(value: str) -> str:
    """GLIBC_TUNABLES `value` with malloc.hugetlb=0 (glibc's default, said explicitly)
    instead of whatever it says of it; every other tunable kept."""
    items = [item for item in value.split(":") if item and item.partition("=")[0] != TUNABLE]
    return ":".join([*items, f"{TUNABLE}=0"])


def hand_down_without_huge_pages(environ: MutableMapping[str, str]) -> None:
    """In the process `start` restarted with huge pages: the processes it starts from now
    on (Ray's) get the tunables without them, and INGEST_TUNABLES keeps the value for
    the ingestion actors. Its own heap keeps them (glibc read them when it started)."""
    value = environ.get("GLIBC_TUNABLES", "")
    if environ.get(RESTARTED) != "1" or f"{TUNABLE}=1" not in value.split(":"):
        return
    environ[INGEST_TUNABLES] = value
    environ["GLIBC_TUNABLES"] = tunables_without_huge_pages(value)


def ingest_runtime_env(environ: Mapping[str, str]) -> dict[str, Any] | None:
    """The Ray runtime_env of an ingestion actor (stream actor, node ingestion server):
    the daemon's huge pages back, when `start` asked for them (None otherwise: the actor
    inherits what Ray's processes have)."""
    value = environ.get(INGEST_TUNABLES)
    return {"env_vars": {"GLIBC_TUNABLES": value}} if value else None


def restart_with_huge_pages() -> None:
    """Replace this process by the same command with the tunable set, when it would
    change anything; returns only when it would not. The restarted process returns here
    too, having handed its children the tunables without huge pages."""
    if os.environ.get(RESTARTED) == "1":  # once, whatever the C library did with the variable
        hand_down_without_huge_pages(os.environ)
        return
    value = tunables_with_huge_pages(os.environ, glibc_version(), thp_mode())
    if value is None:
        return
    env = dict(os.environ, GLIBC_TUNABLES=value)
    env[RESTARTED] = "1"
    sys.stdout.flush()
    sys.stderr.flush()
    # the command exactly as started (interpreter options, `-m` or the console script)
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
