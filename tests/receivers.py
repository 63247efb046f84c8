"""Real notification receivers on 127.0.0.1 for the tests: an aiohttp server that records
webhook and Slack posts, and an SMTP server (aiosmtpd) that records mail."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from email import message_from_bytes
from typing import Any

from aiohttp import web
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

from tests.ports import free_port


class HttpReceiver:
    """Records every POST: path, headers, raw body and JSON. `fail_with` makes it answer
    an error status instead (a receiver that is up but broken)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.posts: list[dict[str, Any]] = []
        self.fail_with: int | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        if self.fail_with:
            return web.Response(status=self.fail_with, text="receiver says no")
        self.posts.append(
            {
                "path": request.path,
                "headers": dict(request.headers),
                "body": body,
                "json": json.loads(body) if body else None,
            }
        )
        return web.Response(status=200, text="ok")

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def start(self) -> HttpReceiver:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def on(self, path: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["path"] == path]


class _MailHandler:
    def __init__(self, box: list[Any]) -> None:
        self.box = box

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.box.append(
            {
                "from": envelope.mail_from,
                "to": list(envelope.rcpt_tos),
                "message": message_from_bytes(envelope.content),
            }
        )
        return "250 OK"


class SmtpReceiver:
    """With `tls_context`, offers STARTTLS; with `login`, requires AUTH (user, password)."""

    def __init__(self, tls_context: Any = None, login: tuple[str, str] | None = None) -> None:
        self.port = free_port()
        self.mail: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {}
        if tls_context is not None:
            kwargs.update(tls_context=tls_context, require_starttls=True)
        if login is not None:

            def authenticate(
                server: Any, session: Any, envelope: Any, mechanism: str, data: Any
            ) -> AuthResult:
                ok = (data.login.decode(), data.password.decode()) == login
                return AuthResult(success=ok)

            kwargs.update(
                authenticator=authenticate,
                auth_required=True,
                auth_require_tls=tls_context is not None,
            )
        self._controller = Controller(
            _MailHandler(self.mail), hostname="127.0.0.1", port=self.port, **kwargs
        )

    def start(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def stop(self) -> None:
        self._controller.stop()


class HangingSmtp:
    """A mail server that accepts connections and never says a word (not even the 220
    greeting): what a wedged or firewalled relay looks like to a client."""

    def __init__(self) -> None:
        self.port = free_port()
        self.connections = 0
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", self.port))
        self._sock.listen(64)
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        self._sock.settimeout(0.2)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            self._held.append(conn)

    def start(self) -> HangingSmtp:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for conn in self._held:
            conn.close()
        self._sock.close()
