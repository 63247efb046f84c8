"""The Python client against a real aiohttp server on loopback: retries on 429/503 with
Retry-After, one connection reused, DataFrames sent with string columns intact, and the
async client making the same calls."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import threading

import msgpack
import pandas as pd
import pytest
from aiohttp import web

from modelmon_daemon.client import (
    DEFAULT_URL,
    AsyncClient,
    Client,
    ClientError,
    DaemonUnreachable,
    InvalidDaemonUrl,
    daemon_url,
)
from modelmon_daemon.core.daemon_file import http_url, live_pid, process_start_ticks


class Server:
    """Answers 429 (Retry-After: 0) to the first `refuse` posts, then 202; records what
    it received and from which client ports."""

    def __init__(self, refuse: int = 0, status: int = 429) -> None:
        self.refuse, self.status = refuse, status
        self.bodies: list[dict] = []
        self.ports: set[int] = set()
        self.auth: list[str | None] = []
        self.loop = asyncio.new_event_loop()
        self.port = 0

    async def _events(self, request: web.Request) -> web.Response:
        self.ports.add(request.transport.get_extra_info("peername")[1])
        self.auth.append(request.headers.get("Authorization"))
        if self.refuse:
            self.refuse -= 1
            return web.json_response(
                {"error": {"message": "busy"}}, status=self.status, headers={"Retry-After": "0"}
            )
        body = msgpack.unpackb(await request.read())
        self.bodies.append(body)
        return web.json_response({"accepted": len(next(iter(body["inputs"].values())))}, status=202)

    async def _endpoint(self, request: web.Request) -> web.Response:
        self.ports.add(request.transport.get_extra_info("peername")[1])
        return web.json_response({"uid": request.match_info["uid"]})

    def __enter__(self) -> Server:
        app = web.Application()
        app.router.add_post("/v1/endpoints/{uid}/events", self._events)
        app.router.add_get("/v1/endpoints/{uid}", self._endpoint)
        runner = web.AppRunner(app)
        self.loop.run_until_complete(runner.setup())
        site = web.TCPSite(runner, "127.0.0.1", 0)
        self.loop.run_until_complete(site.start())
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.runner = runner
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.run_until_complete(self.runner.cleanup())
        self.loop.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


FRAME = pd.DataFrame({"age": [41.0, None, 35.0], "plan": ["gold", None, "basic"], "n": [1, 2, 3]})


def test_retries_on_429_then_sends_once_with_string_columns_intact():
    with Server(refuse=2) as server, Client(server.url, token="t0k", retries=3) as client:
        accepted = client.log_events("ep", FRAME, outputs=[0, 1, 0], request_ids=["a", "b", "c"])
        assert accepted == 3
        assert len(server.bodies) == 1  # the refused attempts were not stored twice
        body = server.bodies[0]
        assert body["inputs"] == {
            "age": [41.0, None, 35.0],
            "plan": ["gold", None, "basic"],
            "n": [1.0, 2.0, 3.0],
        }
        assert body["outputs"] == [0, 1, 0] and body["request_ids"] == ["a", "b", "c"]
        assert server.auth == ["Bearer t0k"] * 3
        client.endpoint("ep")
        assert len(server.ports) == 1  # one connection for every call


def test_gives_up_after_its_retries_with_the_error():
    with Server(refuse=5, status=503) as server, Client(server.url, retries=1) as client:
        with pytest.raises(ClientError) as err:
            client.log_events("ep", FRAME)
        assert err.value.status == 503
        assert not server.bodies


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("ftp://x", "expected http://host:port"),
        ("http://[::1", "Invalid IPv6 URL"),
        ("http://h:99999", "Port out of range"),
        ("http://:8470", "expected http://host:port"),
    ],
)
def test_a_url_that_is_no_daemon_url_is_refused_naming_it(url, reason):
    with pytest.raises(InvalidDaemonUrl) as caught:
        Client(url)
    assert str(caught.value).startswith(f"{url!r} is not a daemon URL") and reason in str(
        caught.value
    )


def test_host_and_port_alone_are_an_http_url():
    with Client("127.0.0.1:8470") as client:
        assert client.url == "http://127.0.0.1:8470"


def test_a_daemon_that_is_down_is_an_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    client = Client(f"http://127.0.0.1:{port}", retries=1, max_backoff=0.01)
    with client, pytest.raises(DaemonUnreachable) as raised:
        client.endpoint("ep")
    assert raised.value.url == f"http://127.0.0.1:{port}"  # the one tried, for the message


def test_the_async_client_makes_the_same_calls():
    async def main(url: str) -> tuple[int, dict]:
        async with AsyncClient(url, token="t0k", retries=2) as client:
            accepted = await client.log_events("ep", FRAME, batch_size=2)
            record = await client.endpoint("ep")
            return accepted, record

    with Server(refuse=1) as server:
        accepted, record = asyncio.run(main(server.url))
        assert accepted == 3 and record == {"uid": "ep"}
        assert [b["inputs"]["plan"] for b in server.bodies] == [["gold", None], ["basic"]]


def _daemon_file(folder, **info) -> str:
    folder.mkdir(exist_ok=True)
    (folder / "daemon.json").write_text(json.dumps(info))
    return str(folder)


def test_the_daemon_of_a_data_dir_is_found_by_its_daemon_file(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELMON_URL", raising=False)
    monkeypatch.delenv("MODELMON_DAEMON_DATA_DIR", raising=False)
    alive = os.getpid()
    data = _daemon_file(tmp_path / "d", pid=alive, host="127.0.0.1", port=9123)
    assert daemon_url(None, data) == "http://127.0.0.1:9123"
    with Client(data_dir=data) as client:
        assert client.url == "http://127.0.0.1:9123"
    # listening on every interface: reached on loopback; IPv6 literals in brackets
    anyv4 = _daemon_file(tmp_path / "a", pid=alive, host="0.0.0.0", port=9124)
    assert daemon_url(None, anyv4) == "http://127.0.0.1:9124"
    anyv6 = _daemon_file(tmp_path / "b", pid=alive, host="::", port=9125)
    assert daemon_url(None, anyv6) == "http://[::1]:9125"
    v6 = _daemon_file(tmp_path / "c", pid=alive, host="::1", port=9126)
    assert daemon_url(None, v6) == "http://[::1]:9126"
    assert http_url("::1", 8470) == "http://[::1]:8470"  # as the daemon writes its URL
    assert http_url("0.0.0.0", 8470) == "http://0.0.0.0:8470"
    # the data dir from the environment when none is given
    monkeypatch.setenv("MODELMON_DAEMON_DATA_DIR", data)
    assert daemon_url() == "http://127.0.0.1:9123"
    # an explicit URL, then $MODELMON_URL, come first
    monkeypatch.setenv("MODELMON_URL", "http://10.0.0.5:8470/")
    assert daemon_url(None, data) == "http://10.0.0.5:8470"
    assert daemon_url("http://h:1", data) == "http://h:1"


def test_a_stale_or_broken_daemon_file_means_the_default_url(tmp_path, monkeypatch):
    monkeypatch.delenv("MODELMON_URL", raising=False)
    gone = subprocess.Popen(["true"])
    gone.wait()
    broken = [
        {"pid": gone.pid, "host": "127.0.0.1", "port": 9127},  # the daemon was killed
        {"pid": "1", "host": "127.0.0.1", "port": 9127},
        {"pid": os.getpid(), "host": "127.0.0.1", "port": "9127"},
        {"pid": os.getpid(), "host": "127.0.0.1", "port": 70000},
        {"pid": os.getpid(), "host": ["127.0.0.1"], "port": 9127},
        {"pid": True, "host": "127.0.0.1", "port": 9127},
        {"pid": os.getpid(), "url": "http://127.0.0.1:9127"},  # no host and port
    ]
    for i, info in enumerate(broken):
        data = _daemon_file(tmp_path / str(i), **info)
        assert daemon_url(None, data) == DEFAULT_URL, info
    for i, text in enumerate(["", "not json", "[1, 2]", '"x"', "null"]):
        (tmp_path / f"t{i}").mkdir()
        (tmp_path / f"t{i}" / "daemon.json").write_text(text)
        assert daemon_url(None, str(tmp_path / f"t{i}")) == DEFAULT_URL, text
    assert daemon_url(None, str(tmp_path / "missing")) == DEFAULT_URL


def test_a_pid_the_system_gave_to_another_process_is_not_the_daemon(tmp_path, monkeypatch):
    """A daemon killed without cleaning up leaves its file; its pid may be reused. The
    file records its process's start (clock ticks since boot), which tells them apart."""
    monkeypatch.delenv("MODELMON_URL", raising=False)
    later = subprocess.Popen(["sleep", "30"])  # a process that got the dead daemon's pid
    try:
        began = process_start_ticks(later.pid)
        assert isinstance(began, int) and began > 0
        assert began >= process_start_ticks(os.getpid())  # started after this test's process
        stale = {"pid": later.pid, "proc_start": began - 1, "host": "127.0.0.1", "port": 9128}
        assert live_pid(stale) is None
        assert daemon_url(None, _daemon_file(tmp_path / "stale", **stale)) == DEFAULT_URL
        # the process that wrote the file: the daemon
        ours = dict(stale, proc_start=began)
        assert live_pid(ours) == later.pid
        assert daemon_url(None, _daemon_file(tmp_path / "ours", **ours)) == "http://127.0.0.1:9128"
        # a file without the field (an older daemon's): the pid alone
        assert live_pid({"pid": later.pid}) == later.pid
    finally:
        later.kill()
        later.wait()
