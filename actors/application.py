"""ApplicationActor: one of a pool; runs any application on any endpoint's window."""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

from modelmon_daemon.applications import build_applications
from modelmon_daemon.applications.runner import run_application
from modelmon_daemon.config import Settings
from modelmon_daemon.records import AppOutput, ColumnBatch, WindowMeta


class ApplicationActor:
    def __init__(self, index: int, settings: dict[str, Any]) -> None:
        self.index = index
        self.settings = Settings.from_dict(settings)
        for path in reversed(self.settings.applications.python_path):
            if path not in sys.path:
                sys.path.insert(0, path)
        self.apps = build_applications(
            self.settings.applications.builtin, self.settings.applications.user
        )
        drift = self.settings.drift
        self.app_settings = {
            **dataclasses.asdict(drift),
            **dataclasses.asdict(self.settings.operational),
            **dataclasses.asdict(self.settings.data_quality),
        }
        self.runs = 0

    def names(self) -> list[str]:
        return list(self.apps)

    def run(
        self, application: str, endpoint: dict[str, Any], meta: WindowMeta, batch: ColumnBatch
    ) -> AppOutput:
        self.runs += 1
        app = self.apps.get(application)
        if app is None:
            return AppOutput(
                application=application, failure=f"unknown application {application!r}"
            )
        return run_application(application, app, endpoint, meta, batch, self.app_settings)

    def ping(self) -> int:
        return self.index
