"""The daemon's listening sockets are opened at start-up, before Ray: the port is held
from then on (no other process can bind it, whatever its socket options), a client that
connects early waits in the backlog, and a taken port is told in one line."""

from __future__ import annotations

import errno
import socket

import pytest

from modelmon_daemon.server.daemon import StartupError, close_listeners, open_listeners
from tests.ports import free_port


def _bind(port: int, reuse: bool) -> None:
    with socket.socket() as other:
        if reuse:
            other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        other.bind(("127.0.0.1", port))


@pytest.mark.parametrize("reuse", [False, True])
def test_the_port_is_held_from_start_up_until_closed(reuse):
    port = free_port()
    listeners = open_listeners("127.0.0.1", port)
    try:
        assert [s.getsockname() for s in listeners] == [("127.0.0.1", port)]
        with pytest.raises(OSError) as taken:
            _bind(port, reuse)
        assert taken.value.errno == errno.EADDRINUSE
        # nothing serves yet, and a client's connection is accepted into the backlog
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    finally:
        close_listeners(listeners)
    _bind(port, reuse)  # released


def test_a_port_another_process_listens_on_is_told_in_one_line():
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        with pytest.raises(StartupError) as err:
            open_listeners("127.0.0.1", port)
    assert str(err.value) == (
        f"cannot listen on 127.0.0.1:{port}: Address already in use "
        "(another process has it? choose one with --port)"
    )


def test_a_host_that_does_not_resolve_is_told_in_one_line():
    with pytest.raises(StartupError) as err:
        open_listeners("no-such-host.invalid", free_port())
    assert str(err.value).startswith("cannot listen on no-such-host.invalid:")


def test_every_address_of_the_host_gets_its_listener():
    port = free_port()
    infos = {
        (family, address[:2])
        for family, _, _, _, address in socket.getaddrinfo(
            "localhost", port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    }
    listeners = open_listeners("localhost", port)
    try:
        assert {(s.family, s.getsockname()[:2]) for s in listeners} == infos
    finally:
        close_listeners(listeners)
