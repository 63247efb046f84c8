"""WriterActor: persists closed windows: raw rows and results to Parquet, then one LMDB
transaction that makes them count (see LmdbStore.commit). Files of a commit that never
happened are deleted on start-up, so every acknowledged event lands exactly once."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from modelmon_daemon.alerts.model import AlertConfig, AlertEvent, events_from_results
from modelmon_daemon.alerts.templates import load_templates, render
from modelmon_daemon.analytics.performance import infer_model_type
from modelmon_daemon.applications.concept_drift import NAME as CONCEPT_DRIFT
from modelmon_daemon.applications.concept_drift import ConceptDriftApplication
from modelmon_daemon.applications.model_performance import NAME as PERFORMANCE
from modelmon_daemon.applications.model_performance import (
    LabeledWindow,
    ModelPerformanceApplication,
)
from modelmon_daemon.applications.runner import failure_text
from modelmon_daemon.config import Settings
from modelmon_daemon.core.enums import ResultKind, ResultStatus
from modelmon_daemon.core.records import (
    AppOutput,
    CallOutputs,
    ColumnBatch,
    OutputWire,
    ResultRecord,
    WindowMeta,
    empty_batch,
    unpack_fields,
    unpack_outputs,
)
from modelmon_daemon.storage.lmdb_store import LmdbStore, PerformanceUpdate, WindowCommit
from modelmon_daemon.storage.parquet_store import EventsFile, ParquetStore, WindowEvents

log = logging.getLogger(__name__)

SPEC_CACHE_SIZE = 65_536  # endpoints whose record's head is kept unpacked
# what the writer reads of an endpoint record (not its reference stats)
SPEC_FIELDS = frozenset(
    {"uid", "project", "feature_names", "label_names", "model_type", "reference_performance"}
)

PERFORMANCE_METRICS = ("accuracy", "precision", "recall", "f1", "mae", "rmse", "r2")


def _day(ts: float) -> str:
    return datetime.fromtimestamp(max(ts, 0.0), tz=UTC).strftime("%Y-%m-%d")


# a window ready to commit: its commit (results included) and its rows for the events files
Prepared = tuple[WindowCommit, WindowEvents | None]
WindowKey = tuple[str, float, bool, tuple[int, ...]]


def _key(meta: WindowMeta) -> WindowKey:
    return (meta.uid, meta.start, meta.late, tuple(meta.seqs))


@dataclass
class StagedEvents:
    """The events files of a tick's first round, written (and marked pending) while the
    application actors compute: they count only if that round commits exactly these
    windows; otherwise they are deleted and the round writes its own."""

    tick: int
    windows: list[WindowEvents]
    index: dict[WindowKey, int]  # window -> its position in `windows`
    files: list[EventsFile]


@dataclass
class WindowOutputs:
    """The application actors' part of a window's commit: result rows as committed, the
    alert events of those results, failures (mm-app-failed entries) and endpoint updates.
    Made by stage_outputs while other windows still compute, else by the commit."""

    results: list[dict[str, Any]]
    updates: dict[str, Any]
    failures: list[dict[str, Any]]
    events: list[AlertEvent]  # of the results; the failures' come at the commit

    def summary(self, uid: str) -> tuple[int, list[str]]:
        """(results written, failures as `uid/application: message`)."""
        return len(self.results), [
            f"{uid}/{f['application']}: {f['message']}" for f in self.failures
        ]


def window_outputs(meta: WindowMeta, outputs: list[OutputWire], project: str) -> WindowOutputs:
    """`outputs`: the window's application outputs as they cross (AppOutput.to_wire)."""
    results = [r for _, records, _, _ in outputs for r in records]
    updates: dict[str, Any] = {}
    for _, _, _, endpoint_updates in outputs:
        updates.update(endpoint_updates)
    failures = [
        {
            "kind": "mm-app-failed",
            "application": application,
            "message": failure,
            "start": meta.start,
            "end": meta.end,
            "time": time.time(),
        }
        for application, _, failure, _ in outputs
        if failure
    ]
    return WindowOutputs(
        results, updates, failures, events_from_results(meta.uid, project, results, [])
    )


class WriterActor:
    def __init__(self, settings: dict[str, Any], store: LmdbStore | None = None) -> None:
        self.settings = Settings.from_dict(settings)
        data = self.settings.data_path
        self.store = store or LmdbStore(
            data, self.settings.storage.lmdb_map_size, self.settings.storage.lmdb_max_map_size
        )
        self.parquet = ParquetStore(self.settings.parquet_root)
        self.windows_written = 0
        self.late_batches_written = 0
        self.rows_written = 0
        for path in self.store.pending_files():
            self.parquet.delete(path)
            log.info("writer: removed %s, written by a commit that did not happen", path)
        self.store.clear_pending(self.store.pending_files())
        moved = self.parquet.migrate_results()
        if moved:
            log.info("writer: moved %d results files to the shared layout", moved)
        moved = self.parquet.migrate_events()
        if moved:
            log.info("writer: moved %d events files to the shared layout", moved)
        notes = self.settings.notifications
        self.templates = load_templates(notes.templates or None)
        d = self.settings.daemon
        self.public_url = notes.public_url or f"http://{d.host}:{d.port}"
        # Parquet writes of a tick run in parallel (pyarrow releases the GIL)
        self.io = ThreadPoolExecutor(max_workers=4, thread_name_prefix="writer-io")
        self.last_maintenance = 0.0
        # uid -> (digest of the stored bytes, record head), least recently used first
        self._specs: OrderedDict[str, tuple[bytes, dict[str, Any]]] = OrderedDict()
        # the stateful applications: their input, the label join, is this actor's
        perf = self.settings.performance
        self.model_performance = ModelPerformanceApplication(
            perf.drop_potential, perf.drop_detected, self.settings.drift.min_sample_size
        )
        self.concept_drift = ConceptDriftApplication()
        self._staged: StagedEvents | None = None
        # (tick, window -> its outputs made ready): see stage_outputs
        self._staged_outputs: tuple[int, dict[WindowKey, WindowOutputs]] = (0, {})

    # -- the log owner's state, for actors on any node (see storage/log_view.py) ---------

    def routes(self) -> dict[str, str]:
        return self.store.routes()

    def put_routes(self, routes: list[tuple[str, str]]) -> None:
        self.store.put_routes(routes)

    def get_endpoint(self, uid: str) -> dict[str, Any] | None:
        return self.store.get_endpoint(uid)

    def get_endpoints_raw(self, uids: list[str]) -> list[bytes | None]:
        return self.store.get_endpoints_raw(uids)

    def get_endpoints_changed(
        self, uids: list[str], known: list[str | None]
    ) -> list[tuple[str, bytes | None] | None]:
        return self.store.get_endpoints_changed(uids, known)

    def get_state(self, uid: str) -> dict[str, Any]:
        return self.store.get_state(uid)

    def wal_records(self, uid: str) -> list[tuple[int, float, dict[str, Any]]]:
        return self.store.wal_records(uid)

    # -- appends from the ingestion servers of other nodes: run in the actor's "log"
    # concurrency group (a thread of their own), never queued behind a tick's commit

    def append(
        self,
        records: list[tuple[str, float, dict[str, Any]]],
        new_endpoints: list[dict[str, Any]],
        registered: list[dict[str, Any]],
    ) -> list[int]:
        """One durable log transaction (LmdbStore.wal_append); the sequence numbers."""
        return self.store.wal_append(records, new_endpoints, registered)

    def logged_rows(self) -> int:
        return self.store.wal_rows()

    # -- labels and the notification outbox: this actor is their one owner; the HTTP
    # process reaches them here (the "state" concurrency group, a thread of its own)

    def log_labels(self, uid: str, ids: list[str], labels: list[Any], now: float) -> int:
        """Labels as posted to Parquet, then into the join, both durable before the answer;
        how many joined a committed prediction at once."""
        self.parquet.write_labels(uid, ids, labels, now)
        self.parquet.sync()
        pairs = [(str(r), v) for r, v in zip(ids, labels, strict=True) if v is not None]
        return self.store.log_labels(uid, pairs, now)

    def purge(self, uid: str) -> int:
        """An endpoint's rows out of the shared Parquet files (DELETE ?purge=true), in
        this actor's main thread, never while a tick or a compaction rewrites them."""
        return self.parquet.purge(uid)

    def outbox(self) -> list[dict[str, Any]]:
        return self.store.outbox()

    def outbox_retry(self, entry: dict[str, Any], error: str, next_at: float) -> None:
        self.store.outbox_retry(entry, error, next_at)

    def outbox_done(self, entry: dict[str, Any], delivered: bool, error: str = "") -> None:
        self.store.outbox_done(entry, delivered, error)

    def wal_batches(self, uid: str, seqs: list[int]) -> list[dict[str, Any]]:
        return self.store.wal_batches(uid, seqs)

    def _notifications(self, alert: AlertConfig, fired: list[AlertEvent]) -> list[dict[str, Any]]:
        """One outbox entry per channel of a firing alert, its message rendered now."""
        message = render(alert, fired, self.public_url, self.templates)
        slack_text = message.pop("slack_text")
        return [
            {"channel": channel, **message}
            | ({"slack_text": slack_text} if channel.get("kind") == "slack" else {})
            for channel in alert.notifications
        ]

    def commit_window(
        self,
        meta: WindowMeta,
        batch: ColumnBatch,
        outputs: list[AppOutput],
        endpoint: dict[str, Any],
        applications: list[str],
    ) -> bool:
        """Write a closed window (or a late batch) and commit it; False if it was already."""
        if self.store.window_committed(meta):
            return False
        wire = [o.to_wire() for o in outputs]
        ready = window_outputs(meta, wire, str(endpoint.get("project", "")))
        prepared = self._prepare(meta, batch, ready, endpoint, applications)
        (done,) = self._commit_round([prepared], [])
        return done

    def stage_events(self, tick: int, metas: list[WindowMeta]) -> int:
        """Read the rows of a tick's first window of each endpoint from the log and write
        their events files, while the application actors compute (the tick's commit then
        only writes results and commits): the writer's part of a tick no longer waits for
        theirs. Returns the number of files written."""
        self._drop_staged()
        windows = []
        for meta in metas:
            if not meta.rows or self.store.window_committed(meta):
                continue
            spec = self._spec(meta.uid)
            if spec is None:
                continue
            windows.append(
                WindowEvents(
                    meta,
                    self._window_rows(meta, spec),
                    list(spec["feature_names"]),
                    list(spec.get("label_names") or []),
                )
            )
        if not windows:
            return 0
        files = self.parquet.events_files(windows)
        self.store.add_pending(sorted(f.path for f in files))
        try:
            list(self.io.map(self.parquet.write_events, files))
            # flushed here, while the application actors compute, so the commit's flush
            # (before its LMDB transaction) is left with the results file
            self.parquet.sync()
        except BaseException:
            self._delete_files([f.path for f in files])
            raise
        index = {_key(w.meta): i for i, w in enumerate(windows)}
        self._staged = StagedEvents(tick, windows, index, files)
        return len(files)

    def stage_outputs(
        self, tick: int, metas: list[WindowMeta], packed: bytes | CallOutputs
    ) -> bool:
        """The outputs of one application call (`metas`: its windows, in order), made
        ready for the tick's commit as soon as they are computed: the writer does this
        while the other application calls run (it is idle once its events files are
        written), and the commit is left with the stateful applications, the results
        file and the LMDB transaction. True if every window of the call was made ready
        (then the commit needs not be sent these outputs again). `packed`: the
        application call's answer (pack_outputs)."""
        outputs = unpack_outputs(packed)
        if self._staged_outputs[0] != tick:
            self._staged_outputs = (tick, {})
        ready = self._staged_outputs[1]
        complete = True
        for meta, out in zip(metas, outputs, strict=True):
            spec = self._spec(meta.uid)
            if out is None or spec is None:
                complete = False  # the commit sees these as it always did
                continue
            ready[_key(meta)] = window_outputs(meta, out, str(spec.get("project", "")))
        return complete

    def _drop_staged(self) -> None:
        staged, self._staged = self._staged, None
        if staged is not None:
            self._delete_files([f.path for f in staged.files])

    def _delete_files(self, paths: list[str]) -> None:
        for path in paths:
            self.parquet.delete(path)
        self.store.clear_pending(paths)

    def commit_tick(
        self,
        items: list[tuple[int, int, WindowMeta, list[AppOutput] | tuple[int, int]]],
        advances: list[tuple[str, float, float | None]],
        applications: list[str],
        batches: list[list[ColumnBatch]] | None = None,
        *packed_chunks: bytes | CallOutputs | None,
        tick: int | None = None,
    ) -> tuple[list[bool | None], list[tuple[int, list[str]]]]:
        """Every window a tick closed, in few durable transactions. `items` are (batch
        list, index in it, meta, outputs); outputs are given, or are (chunk, position) in
        `packed_chunks`, the application actors' answers (pack_outputs; Ray hands them
        here from the actors that computed them; None for a chunk staged already).
        `batches`: the stream actors' window data, one list each, or None: then each
        window's rows are read from the log. Returns per item the status,
        True (committed now), False (committed before) or None (failed: not to be
        acknowledged; done again next tick), and a summary (results written, failures).

        Windows of one endpoint go in order, one per round (the label join and the
        detectors read what the previous window committed); frontier moves ride with the
        last round. Parquet files are written on a thread pool and marked pending first,
        so a crash leaves no file that counts. `tick`: the first round's events files were
        written by stage_events(tick, ...) and are used if they hold exactly its windows."""
        chunks = [None if c is None else unpack_outputs(c) for c in packed_chunks]
        staged = self._staged if self._staged is not None and self._staged.tick == tick else None
        if staged is None:
            self._drop_staged()
        specs: dict[str, dict[str, Any]] = {}
        status: list[bool | None] = [None] * len(items)
        rounds: list[list[int]] = []
        seen: dict[str, int] = {}
        for i, (_, _, meta, _) in enumerate(items):
            uid = meta.uid
            if uid not in specs:
                spec = self._spec(uid)
                if spec is None:
                    continue
                specs[uid] = spec
            k = seen.get(uid, 0)
            seen[uid] = k + 1
            if k == len(rounds):
                rounds.append([])
            rounds[k].append(i)
        ready = self._staged_outputs[1] if self._staged_outputs[0] == tick else {}
        self._staged_outputs = (0, {})
        summaries: list[tuple[int, list[str]]] = [(0, [])] * len(items)
        for r, members in enumerate(rounds):
            prepared: list[tuple[int, Prepared]] = []
            for i in members:
                list_index, index, meta, placed = items[i]
                try:
                    project = str(specs[meta.uid].get("project", ""))
                    if not isinstance(placed, tuple):  # given (the application call failed)
                        outputs = window_outputs(meta, [o.to_wire() for o in placed], project)
                    elif _key(meta) in ready:  # made ready by stage_outputs
                        outputs = ready[_key(meta)]
                    else:
                        chunk = chunks[placed[0]]
                        if chunk is None:  # left out as staged, yet not there
                            raise RuntimeError("the window's application outputs are missing")
                        outputs = window_outputs(meta, chunk[placed[1]] or [], project)
                    summaries[i] = outputs.summary(meta.uid)
                    if self.store.window_committed(meta):
                        status[i] = False
                        continue
                    at = staged.index.get(_key(meta)) if staged is not None and r == 0 else None
                    if batches:
                        batch = batches[list_index][index]
                    elif at is not None and staged is not None:
                        batch = staged.windows[at].batch  # read from the log once
                    else:
                        batch = self._window_rows(meta, specs[meta.uid])
                    prepared.append(
                        (i, self._prepare(meta, batch, outputs, specs[meta.uid], applications))
                    )
                except Exception as exc:  # one endpoint's trouble must not stop the rest
                    log.warning("writer: window %s/%s: %r", meta.uid, meta.start, exc)
            last = r == len(rounds) - 1
            moves = self._advances(advances, specs, applications) if last else []
            use = None
            if r == 0 and staged is not None:
                written = [_key(c.meta) for _, (c, w) in prepared if w is not None]
                if len(written) == len(staged.index) and set(written) == staged.index.keys():
                    use, self._staged = staged, None
                else:  # a window failed or changed since: the round writes its own files
                    log.info("writer: staged events files do not match the tick; rewritten")
                    self._drop_staged()
            flags = self._commit_round([p for _, p in prepared], moves, use)
            for (i, _), flag in zip(prepared, flags, strict=True):
                status[i] = flag
        self._drop_staged()  # not used by a round (no window of the tick was left)
        if not rounds and advances:
            self.store.commit_many([], self._advances(advances, specs, applications))
        return status, summaries

    def _spec(self, uid: str) -> dict[str, Any] | None:
        """What the writer needs of an endpoint's record (SPEC_FIELDS), unpacked once per
        stored version (a digest of the stored bytes is compared): reference stats and
        PCA models are skipped, never built. Callers read it and never change it."""
        raw = self.store.get_endpoint_raw(uid)
        if raw is None:
            self._specs.pop(uid, None)
            return None
        version = hashlib.blake2b(raw, digest_size=16).digest()
        cached = self._specs.get(uid)
        if cached is not None and cached[0] == version:
            self._specs.move_to_end(uid)
            return cached[1]
        spec = unpack_fields(raw, SPEC_FIELDS)
        self._specs[uid] = (version, spec)
        self._specs.move_to_end(uid)
        while len(self._specs) > SPEC_CACHE_SIZE:
            self._specs.popitem(last=False)
        return spec

    def _window_rows(self, meta: WindowMeta, spec: dict[str, Any]) -> ColumnBatch:
        """A window's rows, read from the log this actor owns (its records are there until
        this commit): cheaper than receiving them through Ray's object store."""
        wires = self.store.wal_batches(meta.uid, sorted(meta.seqs))
        return ColumnBatch.concat(
            [ColumnBatch.from_wire(w, copy=False) for w in wires],  # only read here
            len(spec["feature_names"]),
            len(spec.get("label_names") or []),
        )

    def maintain_when_due(self) -> dict[str, int] | None:
        """maintain(), once storage.maintenance_interval has passed since its last run
        (the controller asks after each tick's acknowledgements, never inside a commit)."""
        if time.time() - self.last_maintenance < self.settings.storage.maintenance_interval:
            return None
        return self.maintain()

    def maintain(self, now: float | None = None) -> dict[str, int]:
        """storage.retention and compaction of past days' partitions (at most
        storage.maintenance_batch partitions a run, so a tick stays short)."""
        now = time.time() if now is None else now
        self.last_maintenance = now
        storage = self.settings.storage
        done = {"expired": 0, "compacted": 0}
        try:
            if storage.retention:
                done["expired"] = self.parquet.expire(_day(now - storage.retention))
            if storage.compact:
                busy = set(self.store.pending_files())
                for directory in self.parquet.partitions(_day(now))[: storage.maintenance_batch]:
                    done["compacted"] += self.parquet.compact(directory, busy)
        except Exception as exc:  # maintenance must never stop commits
            log.warning("writer: storage maintenance failed: %r", exc)
        return done

    def _commit_round(
        self,
        prepared: list[Prepared],
        moves: list[tuple[str, float, list[str]]],
        staged: StagedEvents | None = None,
    ) -> list[bool]:
        """Write the round's files (the events of all its windows in one file per column
        layout and hour, their results in one file per day) on the thread pool, mark them
        pending, then one LMDB commit. If the commit fails, the files are removed (their
        names depend on the set of windows, which may differ when the tick is done again).
        `staged`: the round's events files, written already (they hold exactly its rows)."""
        commits = [c for c, _ in prepared]
        rows = [(c, w) for c, w in prepared if w is not None]
        if staged is not None:
            events: list[EventsFile] = []
            by_key = {_key(c.meta): c for c, _ in rows}
            for file in staged.files:
                for i in file.windows:
                    by_key[_key(staged.windows[i].meta)].files.append(file.path)
        else:
            events = self.parquet.events_files([w for _, w in rows])
            for file in events:
                for i in file.windows:
                    rows[i][0].files.append(file.path)
        written = [f.path for f in staged.files] if staged is not None else []
        results = self.parquet.results_files(
            [(c.meta, c.results, c.project) for c, _ in prepared if c.results]
        )
        paths = written + [f.path for f in events] + [path for path, _ in results]
        for c in commits:
            c.files = [*c.files, *(path for path, _ in results)]
        self.store.add_pending(sorted({f for c in commits for f in c.files}))
        writes: list[Any] = [lambda f=file: self.parquet.write_events(f) for file in events]
        writes += [
            lambda p=path, t=table: self.parquet.write_table(p, t) for path, table in results
        ]
        try:
            list(self.io.map(lambda write: write(), writes))
            if writes:  # staged files were flushed when they were written (stage_events)
                self.parquet.sync()  # the files are durable before the log forgets their rows
            flags = self.store.commit_many(commits, moves, self._notifications)
        except BaseException:
            self._delete_files(paths)
            raise
        for commit, flag in zip(commits, flags, strict=True):
            if not flag and commit.meta.rows:  # checked before: only a second writer could
                log.error(
                    "writer: window %s/%s was committed twice", commit.meta.uid, commit.meta.start
                )
        self._count(commits, flags)
        return flags

    def _advances(
        self,
        advances: list[tuple[str, float, float | None]],
        specs: dict[str, dict[str, Any]],
        applications: list[str],
    ) -> list[tuple[str, float, list[str]]]:
        moves = []
        for uid, frontier, silence in advances:
            spec = specs.get(uid) or self.store.get_endpoint(uid)
            if spec is None:
                continue
            if silence is not None:  # a quiet endpoint may owe a no_traffic result first
                self.advance(uid, frontier, applications, spec, silence)
                continue
            moves.append((uid, frontier, applications))
        return moves

    def _count(self, commits: list[WindowCommit], flags: list[bool]) -> None:
        for commit, flag in zip(commits, flags, strict=True):
            if not flag:
                continue
            self.rows_written += commit.meta.rows
            if commit.meta.late:
                self.late_batches_written += 1
            else:
                self.windows_written += 1

    def _prepare(
        self,
        meta: WindowMeta,
        batch: ColumnBatch,
        outputs: WindowOutputs,
        endpoint: dict[str, Any],
        applications: list[str],
    ) -> Prepared:
        """The window's commit, its rows and its results (written with the other windows
        of the round, in shared files)."""
        project = str(endpoint.get("project", ""))
        perf_outputs, perf_update = self._performance(meta, batch, endpoint)
        if perf_outputs:
            applications = [*applications, PERFORMANCE, CONCEPT_DRIFT]
            perf = window_outputs(meta, [o.to_wire() for o in perf_outputs], project)
            outputs = WindowOutputs(
                outputs.results + perf.results,
                {**outputs.updates, **perf.updates},
                outputs.failures + perf.failures,
                outputs.events + perf.events,
            )
        events = (
            WindowEvents(
                meta,
                batch,
                list(endpoint["feature_names"]),
                list(endpoint.get("label_names") or []),
            )
            if meta.rows
            else None
        )
        updates = outputs.updates
        for record in (r for o in perf_outputs for r in o.results):
            if record.type == "result" and record.application == PERFORMANCE:
                # the realized value, next to the estimate
                metrics = {k: v for k, v in record.extra.items() if k in PERFORMANCE_METRICS}
                updates = {
                    **updates,
                    "performance_realized": {
                        "start": record.start,
                        "end": record.end,
                        "pairs": record.sample_size,
                        record.name: record.value,
                        **metrics,
                    },
                }
        commit = WindowCommit(
            meta,
            [],
            applications,
            outputs.results,
            updates,
            outputs.failures,
            project,
            outputs.events + events_from_results(meta.uid, project, [], outputs.failures),
            perf_update,
        )
        return commit, events

    def _performance(
        self, meta: WindowMeta, batch: ColumnBatch, endpoint: dict[str, Any]
    ) -> tuple[list[AppOutput], PerformanceUpdate | None]:
        """Join labels to this window's predictions (this actor owns the join) and run the
        stateful applications on every pair joined since the last scored window (late
        labels of analyzed windows included)."""
        if not batch.outputs:
            return [], None
        # declared at registration, else inferred once labels have joined predictions
        model_type = endpoint.get("model_type") or ""
        if not model_type:
            if not self.store.has_labels(meta.uid):
                return [], None  # nothing to join: no prediction kept, no lookups
            model_type = self.store.get_state(meta.uid).get("inferred_model_type") or ""
        rids = [str(r) for r in batch.request_ids.tolist()]
        outputs = batch.outputs[0].tolist()
        stamps = batch.timestamps.tolist()
        joined, waiting = self.store.performance_inputs(meta.uid, rids)
        update = PerformanceUpdate(expires=time.time() + self.settings.performance.label_ttl)
        rows = [
            (rid, output, ts)
            for rid, output, ts in zip(rids, outputs, stamps, strict=True)
            if output is not None and not (isinstance(output, float) and output != output)
        ]
        if meta.late:
            # late rows only feed the join (the commit joins those whose label is waiting);
            # their pairs are scored with the next window
            update.predictions = rows
            return [], update
        pairs = [(p["ts"], p["label"], p["output"]) for p in joined.values()]
        update.used_joined = list(joined)
        for rid, output, ts in rows:
            if rid in waiting:
                pairs.append((ts, waiting[rid], output))
                update.used_labels.append(rid)
            else:
                update.predictions.append((rid, output, ts))
        if not pairs:
            return [], update
        if not model_type:
            model_type = infer_model_type([p[1] for p in pairs], [p[2] for p in pairs])
            update.inferred_model_type = model_type
        pairs.sort(key=lambda p: p[0])
        window = LabeledWindow(
            meta,
            model_type,
            [p[1] for p in pairs],
            [p[2] for p in pairs],
            endpoint.get("reference_performance") or {},
        )
        return self._labeled_outputs(window, meta.uid, update), update

    def _labeled_outputs(
        self, window: LabeledWindow, uid: str, update: PerformanceUpdate
    ) -> list[AppOutput]:
        """The two stateful applications on the joined pairs, each isolated as the runner
        isolates the others: one that raises gives a failure (an mm-app-failed event) and
        the window still commits; the detector's state moves only when it ran."""
        outputs = []
        try:
            outputs.append(AppOutput(PERFORMANCE, self.model_performance.score(window)))
        except Exception as exc:
            outputs.append(AppOutput(PERFORMANCE, failure=failure_text(exc)))
        try:
            record, update.detector = self.concept_drift.detect(
                window, self.store.get_detector(uid)
            )
            outputs.append(AppOutput(CONCEPT_DRIFT, [record]))
        except Exception as exc:
            outputs.append(AppOutput(CONCEPT_DRIFT, failure=failure_text(exc)))
        return outputs

    def advance(
        self,
        uid: str,
        closed_through: float,
        applications: list[str],
        endpoint: dict[str, Any] | None = None,
        silence: float | None = None,
    ) -> None:
        """Move the frontier over empty windows. An endpoint without arrivals for
        operational.no_traffic_after gets a no_traffic result for the last of them."""
        after = self.settings.operational.no_traffic_after
        state = self.store.get_state(uid)
        closed = state["closed_through"]
        if (
            after
            and silence is not None
            and silence >= after
            and endpoint is not None
            and (closed is None or closed < closed_through)
        ):
            period = self.settings.windows.base_period
            meta = WindowMeta(uid, closed_through - period, closed_through, [], rows=0)
            record = ResultRecord(
                "operational-health",
                "no_traffic",
                "result",
                float(silence),
                meta.start,
                meta.end,
                ResultKind.system_performance,
                ResultStatus.detected,
                {"after_s": after, "silent_s": silence},
                0,
            )
            n_out = len(endpoint.get("label_names") or [])
            self.commit_window(
                meta,
                empty_batch(len(endpoint["feature_names"]), n_out),
                [AppOutput("operational-health", [record])],
                endpoint,
                applications,
            )
        self.store.advance_empty(uid, closed_through, applications)

    def counters(self) -> dict[str, int]:
        return {
            "windows_written": self.windows_written,
            "late_batches_written": self.late_batches_written,
            "rows_written": self.rows_written,
        }

    def ping(self) -> str:
        return "writer"
