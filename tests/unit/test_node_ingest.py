"""Why a node's ingestion server did not start, or a tick failed, in one line: Ray wraps
the actor's exception, and the wrapper's repr (what the log showed) dropped its message."""

from __future__ import annotations

import socket

import pytest
from ray.exceptions import RayTaskError

from modelmon_daemon.server.node_ingest import start_failure


def test_a_taken_port_is_named_with_the_hint_for_nodes_sharing_a_machine():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as second, pytest.raises(OSError) as caught:
            second.bind(("127.0.0.1", port))
    wrapped = RayTaskError("start", "Traceback ...", caught.value).as_instanceof_cause()
    line = start_failure(wrapped, "127.0.0.1", port)
    assert str(caught.value) in line and "\n" not in line
    assert f"127.0.0.1:{port} is taken on that node" in line
    assert "daemon.node_port = 0" in line


def test_other_failures_keep_their_own_message():
    wrapped = RayTaskError("start", "tb", ValueError("bad\nthing")).as_instanceof_cause()
    assert start_failure(wrapped, "0.0.0.0", 8470) == "bad thing"
    assert start_failure(TimeoutError(), "0.0.0.0", 8470) == "no answer within 60 s"
    assert start_failure(RuntimeError(), "0.0.0.0", 8470) == "RuntimeError"


def test_an_actor_error_reads_as_the_remote_exception_in_one_line():
    from modelmon_daemon.core.errors import one_line

    cause = OSError("When uploading part for key 'events/x.parquet':\n  connection refused")
    wrapped = RayTaskError("commit_tick", "Traceback ...", cause).as_instanceof_cause()
    assert repr(wrapped) == "RayTaskError(OSError)()"  # what a tick's failure said
    assert one_line(wrapped) == (
        "OSError: When uploading part for key 'events/x.parquet': connection refused"
    )
    assert one_line(KeyError("k")) == "KeyError: 'k'" and one_line(RuntimeError()) == "RuntimeError"
