"""Loopback ports for the tests' servers, from a range nothing else takes by chance.

A port the kernel hands out for `bind(("127.0.0.1", 0))` is in the ephemeral range, where
every process that binds port 0 or connects out takes ports too, and where Ray chooses
the ports of its services: at random between a port the kernel hands out and 65535,
checked free and then let go until the service binds it (`Node._get_unused_port`). A
port that was free when a test chose it could be Ray's a second later, and the daemon
under test would then find it taken. So ports come from between Ray's worker ports
(10002-19999 unless configured) and the start of the kernel's ephemeral range, are
checked to bind, and are never handed out twice in a run.
"""

from __future__ import annotations

import random
import socket

_RAY_WORKER_PORTS_END = 19999
_handed_out: set[int] = set()
_pick = random.Random()  # its own generator: a test that seeds `random` changes nothing here


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def _binds(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port() -> int:
    """A loopback port that binds now, outside the ephemeral range, new in this run."""
    low, high = _RAY_WORKER_PORTS_END + 1, _ephemeral_start() - 1
    if high - low < 1000:  # an unusual ephemeral range: fall back to the kernel's choice
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    for _ in range(200):
        port = _pick.randint(low, high)
        if port not in _handed_out and _binds(port):
            _handed_out.add(port)
            return port
    raise RuntimeError(f"no free loopback port in {low}-{high}")
