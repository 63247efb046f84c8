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
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLE = "glibc.malloc.hugetlb"
MIN_GLIBC = (2, 35)  # the first glibc with malloc.hugetlb
THP_MODE_FILE = Path("/sys/kernel/mm/transparent_hugepage/enabled")
RESTARTED = "MODELMON_HUGE_PAGES_RESTARTED"


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


def restart_with_huge_pages() -> None:
    """Replace this process by the same command with the tunable set, when it would
    change anything; returns only when it would not."""
    if os.environ.get(RESTARTED) == "1":  # once, whatever the C library did with the variable
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
