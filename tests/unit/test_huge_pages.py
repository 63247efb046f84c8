"""When `start` asks malloc for transparent huge pages, and when it leaves the environment alone."""

from __future__ import annotations

import os
import subprocess
import sys

from modelmon_daemon.core.huge_pages import (
    RESTARTED,
    glibc_version,
    hand_down_without_huge_pages,
    ingest_runtime_env,
    thp_mode,
    tunables_with_huge_pages,
    tunables_without_huge_pages,
)

GLIBC = (2, 36)


def test_sets_the_tunable_when_glibc_and_kernel_can():
    assert tunables_with_huge_pages({}, GLIBC, "madvise") == "glibc.malloc.hugetlb=1"
    assert tunables_with_huge_pages({}, (2, 35), "always") == "glibc.malloc.hugetlb=1"


def test_keeps_other_tunables_the_user_set():
    env = {"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}
    assert (
        tunables_with_huge_pages(env, GLIBC, "always")
        == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    )


def test_the_users_own_choice_of_the_tunable_stands():
    for value in ("glibc.malloc.hugetlb=0", "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=2"):
        assert tunables_with_huge_pages({"GLIBC_TUNABLES": value}, GLIBC, "always") is None


def test_nothing_changes_without_glibc_support_or_kernel_huge_pages():
    assert tunables_with_huge_pages({}, None, "always") is None  # musl and others
    assert tunables_with_huge_pages({}, (2, 34), "always") is None  # before malloc.hugetlb
    assert tunables_with_huge_pages({}, GLIBC, "never") is None
    assert tunables_with_huge_pages({}, GLIBC, None) is None  # no THP file


def test_thp_mode_reads_the_bracketed_choice(tmp_path):
    path = tmp_path / "enabled"
    path.write_text("always [madvise] never\n")
    assert thp_mode(path) == "madvise"
    path.write_text("[always] madvise never\n")
    assert thp_mode(path) == "always"
    path.write_text("garbage\n")
    assert thp_mode(path) is None
    assert thp_mode(tmp_path / "missing") is None


def test_glibc_version_is_a_pair_or_none():
    version = glibc_version()
    assert version is None or (len(version) == 2 and all(isinstance(v, int) for v in version))


def test_restart_replaces_the_process_once_with_the_same_command():
    """`python -c` with an interpreter option: the restarted process runs the same code
    (orig_argv kept) under the same pid, and does not restart again."""
    code = (
        "import os, sys\n"
        "from modelmon_daemon.core.huge_pages import restart_with_huge_pages\n"
        "print('run', os.getpid(), sys.flags.dont_write_bytecode, flush=True)\n"
        "restart_with_huge_pages()\n"
        "print('tunables', os.environ.get('GLIBC_TUNABLES'),"
        " os.environ.get('MODELMON_INGEST_GLIBC_TUNABLES'), flush=True)\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", RESTARTED)}
    out = subprocess.run(
        [sys.executable, "-B", "-c", code], env=env, capture_output=True, text=True, timeout=30
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    expected = tunables_with_huge_pages(env, glibc_version(), thp_mode())
    runs = [line for line in lines if line.startswith("run ")]
    assert len(runs) == (2 if expected else 1)
    assert len({line.split()[1] for line in runs}) == 1  # same pid
    assert all(line.endswith(" 1") for line in runs)  # -B kept
    # the restarted process keeps the tunable for its own heap (glibc read it at exec)
    # and hands its children the tunables without it, keeping them for the ingestion
    # actors
    if expected:
        assert lines[-1] == f"tunables {tunables_without_huge_pages(expected)} {expected}"
    else:
        assert lines[-1] == "tunables None None"


def test_without_huge_pages_keeps_every_other_tunable():
    assert tunables_without_huge_pages("glibc.malloc.hugetlb=1") == "glibc.malloc.hugetlb=0"
    assert (
        tunables_without_huge_pages("glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1")
        == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"
    )
    assert tunables_without_huge_pages("") == "glibc.malloc.hugetlb=0"


def test_the_restarted_daemon_hands_its_children_no_huge_pages_and_its_ingestion_actors_some():
    value = "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"
    env = {"GLIBC_TUNABLES": value, RESTARTED: "1"}
    hand_down_without_huge_pages(env)
    assert env["GLIBC_TUNABLES"] == "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=0"
    assert ingest_runtime_env(env) == {"env_vars": {"GLIBC_TUNABLES": value}}


def test_without_the_restart_every_process_keeps_what_it_has():
    for env in (
        {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"},  # the user's own choice
        {"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0", RESTARTED: "1"},
        {RESTARTED: "1"},
        {},
    ):
        before = dict(env)
        hand_down_without_huge_pages(env)
        assert env == before
        assert ingest_runtime_env(env) is None
