"""The Python client against a real aiohttp server on loopback: retries on 429/503 with
Retry-After, one connection reused, DataFrames sent with string columns intact, and the
async client making the same calls."""

from __future__ import annotations

import asyncio
import socket
import threading

import msgpack
import pandas as pd
import pytest
from aiohttp import web

from modelmon_daemon.client import AsyncClient, Client, ClientError, DaemonUnreachable


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


def test_a_daemon_that_is_down_is_an_oserror():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens once closed
    client = Client(f"http://127.0.0.1:{port}", retries=1, max_backoff=0.01)
    with client, pytest.raises(DaemonUnreachable):
        client.endpoint("ep")


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
