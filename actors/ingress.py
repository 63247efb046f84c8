"""NodeIngestionActor: the ingestion server of one node. An aiohttp server on the actor's
event loop, serving the event routes the daemon serves (the app is built by the server
layer and handed in), so model servers post to their own node and parsing scales with
the nodes while durability stays with the one log owner."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

from modelmon_daemon.config import Settings

AppFactory = Callable[[Settings, str], web.Application]


class NodeIngestionActor:
    def __init__(self, settings: dict[str, Any], token: str, build_app: AppFactory) -> None:
        self.settings = Settings.from_dict(settings)
        self.token = token
        self.build_app = build_app
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def start(self, host: str, port: int, advertised_host: str) -> str:
        """Listen (once; later calls answer the URL): `port` 0 takes any free port."""
        if self.runner is None:
            runner = web.AppRunner(
                self.build_app(self.settings, self.token), access_log=None, handle_signals=False
            )
            await runner.setup()
            site = web.TCPSite(runner, host, port, reuse_address=True)
            try:
                await site.start()
            except BaseException:
                await runner.cleanup()
                raise
            bound = runner.addresses[0][1] if runner.addresses else port
            self.runner = runner
            self.url = f"http://{advertised_host}:{bound}"
        return self.url

    async def stop(self) -> None:
        """Stop answering, then flush the requests being logged (their clients get 202)."""
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None

    async def ping(self) -> str:
        return self.url
