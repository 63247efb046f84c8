"""ApplicationActor: one of a pool; runs any application on any endpoint's window."""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from typing import Any

from modelmon_daemon.applications import build_applications
from modelmon_daemon.applications.reference_cache import REFERENCE_CACHE
from modelmon_daemon.applications.runner import run_application
from modelmon_daemon.config import Settings, application_settings
from modelmon_daemon.core.records import (
    AppOutput,
    CallOutputs,
    ColumnBatch,
    WindowMeta,
    pack_outputs,
    unpack,
)

SPEC_CACHE_SIZE = 50_000  # endpoint specs (reference stats) kept per actor

log = logging.getLogger(__name__)


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
        self.app_settings = application_settings(self.settings)
        self.runs = 0
        self.spec_cache: OrderedDict[str, tuple[str, dict[str, Any]]] = OrderedDict()

    def names(self) -> list[str]:
        return list(self.apps)

    def node_id(self) -> str:
        """The Ray node this actor runs on (placement shows in /v1/status)."""
        import ray

        return str(ray.get_runtime_context().get_node_id())

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

    def run_many(
        self,
        batches: list[ColumnBatch],
        jobs: list[tuple[int, str, str, WindowMeta]],
        specs: dict[str, tuple[str, bytes | dict[str, Any]]],
    ) -> tuple[bytes | CallOutputs, list[str]]:
        """Every application on many endpoint-windows in one call. `jobs` are (index in
        `batches`, endpoint uid, spec version, meta); endpoint specs are cached here by
        version, so `specs` carries only those this actor may lack (as stored: unpacked
        here, once per version). Returns the outputs per job (None where the spec is
        missing), packed for the writer (pack_outputs), and the uids whose spec is
        needed."""
        self._keep(specs)
        out: CallOutputs = []
        missing: list[str] = []
        for index, uid, version, meta in jobs:
            cached = self.spec_cache.get(uid)
            if cached is None or cached[0] != version:
                out.append(None)
                missing.append(uid)
                continue
            batch = batches[index]
            out.append([self.run(name, cached[1], meta, batch) for name in self.apps])
        return pack_outputs(out), missing

    def prepare(self, specs: dict[str, tuple[str, bytes | dict[str, Any]]]) -> int:
        """Keep these endpoint records (as run_many does) and let each application derive
        what it keeps of them now (an optional `prepare(endpoint)`: padded edges,
        reference probabilities, bounds, PCA arrays), between ticks, instead of at the
        endpoint's first window. Returns how many records were new here. An application
        whose prepare fails is left to derive at the window, where a failure is reported."""
        kept = self._keep(specs)
        for uid in kept:
            endpoint = self.spec_cache[uid][1]
            for name, app in self.apps.items():
                prepare = getattr(app, "prepare", None)
                if prepare is None:
                    continue
                try:
                    prepare(endpoint)
                except Exception as exc:
                    log.warning("application %s: prepare %s: %r", name, uid, exc)
        return len(kept)

    def _keep(self, specs: dict[str, tuple[str, bytes | dict[str, Any]]]) -> list[str]:
        """Cache endpoint records by version (stored bytes are unpacked here, once per
        version); a version already held is kept as it is, with what was derived from it.
        Returns the uids whose record is new here."""
        kept = []
        for uid, (version, spec) in specs.items():
            previous = self.spec_cache.get(uid)
            if previous is not None and previous[0] == version:
                self.spec_cache.move_to_end(uid)
                continue
            if previous is not None:
                _let_go(previous[1])
            self.spec_cache[uid] = (version, unpack(spec) if isinstance(spec, bytes) else spec)
            self.spec_cache.move_to_end(uid)
            kept.append(uid)
        while len(self.spec_cache) > SPEC_CACHE_SIZE:
            _let_go(self.spec_cache.popitem(last=False)[1][1])
        return [uid for uid in kept if uid in self.spec_cache]

    def ping(self) -> int:
        return self.index


def _let_go(spec: dict[str, Any]) -> None:
    """Drop what the applications derived from a record this actor no longer keeps (its
    reference stats and PCA model are the objects the derived values are keyed by)."""
    REFERENCE_CACHE.discard(*spec.values())
