"""Window arithmetic and the per-endpoint window state (pure, no Ray, no I/O).

Windows are [t, t+P) aligned to multiples of P since the epoch, by event time. The
watermark is the largest event time seen minus the allowed lateness; a window closes when
the watermark reaches its end, or when the endpoint has been quiet (no arrival) for the
allowed lateness of wall-clock time and the clock is past the window's end. Events for a
window that is already closed are late: kept and counted, not analyzed again.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from modelmon_daemon.core.records import ColumnBatch, WindowMeta


def window_start(ts: float, base_period: float) -> float:
    return math.floor(ts / base_period) * base_period


def close_limit(
    max_event_time: float | None,
    last_arrival: float | None,
    now: float,
    base_period: float,
    allowed_lateness: float,
) -> float | None:
    """Every window ending at or before the returned time is closed."""
    limits: list[float] = []
    if max_event_time is not None:
        watermark = max_event_time - allowed_lateness
        limits.append(window_start(watermark, base_period))
    if last_arrival is not None and now - last_arrival >= allowed_lateness:
        limits.append(window_start(now, base_period))
    return max(limits) if limits else None


@dataclass
class _Summary:
    """What the live view needs of a batch, kept when its rows are spilled."""

    rows: int
    errors: int
    first: float | None
    last: float | None

    @classmethod
    def of(cls, batch: ColumnBatch) -> _Summary:
        ts = batch.timestamps
        if not len(ts):
            return cls(0, batch.error_events, None, None)
        return cls(len(batch), batch.error_events, float(ts.min()), float(ts.max()))


@dataclass
class _Buffered:
    """A window's logged records in arrival order; a spilled record's batch is None (its
    rows are read back from the durability log when the window closes)."""

    seqs: list[int] = field(default_factory=list)
    batches: list[ColumnBatch | None] = field(default_factory=list)
    summaries: list[_Summary] = field(default_factory=list)
    rows: int = 0
    held: int = 0  # rows in memory

    def add(self, seq: int, batch: ColumnBatch) -> None:
        self.seqs.append(seq)
        self.batches.append(batch)
        self.summaries.append(_Summary.of(batch))
        self.rows += len(batch)
        self.held += len(batch)

    def spill(self) -> int:
        """Drop every held batch from memory; returns the rows freed."""
        freed = self.held
        self.batches = [None] * len(self.batches)
        self.held = 0
        return freed


# seqs -> their batches, read from the durability log (the stream actor's store)
LogReader = Callable[[list[int]], list[ColumnBatch]]


@dataclass
class PendingWindow:
    meta: WindowMeta
    batch: ColumnBatch | None  # None: spilled, rebuilt from the log when asked
    seqs: list[int] = field(default_factory=list)  # arrival order
    held: list[ColumnBatch | None] = field(default_factory=list)


class EndpointWindows:
    """Buffers of one endpoint's open windows, its closed-window frontier and late events.

    Closing is two-phase so a tick can fail and be retried: `close()` moves windows to
    `pending`, and only `ack()` (after the writer committed them) forgets them.
    """

    RECENT_SEQS = 200_000

    def __init__(
        self,
        uid: str,
        n_features: int,
        n_outputs: int,
        base_period: float,
        allowed_lateness: float,
        closed_through: float | None = None,
        read_log: LogReader | None = None,
    ) -> None:
        self.uid = uid
        self.read_log = read_log
        self.n_features = n_features
        self.n_outputs = n_outputs
        self.base_period = base_period
        self.allowed_lateness = allowed_lateness
        self.closed_through = closed_through
        self.max_event_time: float | None = None
        self.last_arrival: float | None = None
        self.open: dict[float, _Buffered] = {}
        self.late: dict[float, _Buffered] = {}
        self.pending: dict[tuple[float, bool], PendingWindow] = {}
        self._seen: set[int] = set()
        self._recent: deque[int] = deque()
        self._recent_set: set[int] = set()

    # -- input -------------------------------------------------------------------------

    def add(self, seq: int, start: float, batch: ColumnBatch, arrival: float | None) -> bool:
        """Buffer a logged record (its rows all in the window at `start`); a seq seen
        before is ignored, so replays after a restart are harmless. Returns False then."""
        if seq in self._seen or seq in self._recent_set:
            return False
        self._seen.add(seq)
        if len(batch):
            top = float(batch.timestamps.max())
            if self.max_event_time is None or top > self.max_event_time:
                self.max_event_time = top
        if arrival is not None:
            self.last_arrival = (
                arrival if self.last_arrival is None else max(self.last_arrival, arrival)
            )
        if self.closed_through is not None and start < self.closed_through:
            self.late.setdefault(start, _Buffered()).add(seq, batch)
        else:
            self.open.setdefault(start, _Buffered()).add(seq, batch)
        return True

    # -- closing -------------------------------------------------------------------------

    def close(self, now: float) -> list[WindowMeta]:
        """Close what the watermark or silence allows; return every window awaiting ack
        (newly closed and still pending from a failed tick), oldest first, late last."""
        if self.last_arrival is None and self.max_event_time is None and not self.open:
            return self.pending_metas()
        limit = close_limit(
            self.max_event_time, self.last_arrival, now, self.base_period, self.allowed_lateness
        )
        if limit is not None and (self.closed_through is None or limit > self.closed_through):
            for start in sorted(s for s in self.open if s + self.base_period <= limit):
                self._to_pending(start, self.open.pop(start), late=False)
            self.closed_through = limit
        for start in sorted(self.late):
            key = (start, True)
            if key in self.pending:
                continue  # one late batch per window in flight at a time
            self._to_pending(start, self.late.pop(start), late=True)
        return self.pending_metas()

    def _to_pending(self, start: float, buf: _Buffered, late: bool) -> None:
        summaries = buf.summaries
        firsts = [x.first for x in summaries if x.first is not None]
        lasts = [x.last for x in summaries if x.last is not None]
        meta = WindowMeta(
            uid=self.uid,
            start=start,
            end=start + self.base_period,
            seqs=sorted(buf.seqs),
            rows=buf.rows,
            late=late,
            error_events=sum(x.errors for x in summaries),
            first_event=min(firsts) if firsts else None,
            last_event=max(lasts) if lasts else None,
        )
        if buf.held == buf.rows and all(b is not None for b in buf.batches):
            held = [b for b in buf.batches if b is not None]
            batch = ColumnBatch.concat(held, self.n_features, self.n_outputs)
            self.pending[(start, late)] = PendingWindow(meta, batch, list(buf.seqs))
        else:  # spilled: keep only what is still held; the rest comes from the log
            self.pending[(start, late)] = PendingWindow(meta, None, buf.seqs, buf.batches)

    def pending_metas(self) -> list[WindowMeta]:
        metas = [p.meta for p in self.pending.values()]
        return sorted(metas, key=lambda m: (m.late, m.start))

    def window_batch(self, start: float, late: bool) -> ColumnBatch:
        """A closed window's rows; a spilled one is rebuilt from the log on each call (and
        not kept: it is asked for once per tick)."""
        pending = self.pending[(start, late)]
        if pending.batch is not None:
            return pending.batch
        if self.read_log is None:
            raise RuntimeError("a spilled window needs a log reader")
        missing = [seq for seq, b in zip(pending.seqs, pending.held, strict=True) if b is None]
        loaded = dict(zip(missing, self.read_log(missing), strict=True))
        batches = [
            b if b is not None else loaded[seq]
            for seq, b in zip(pending.seqs, pending.held, strict=True)
        ]
        return ColumnBatch.concat(batches, self.n_features, self.n_outputs)

    # -- memory --------------------------------------------------------------------------

    def held_rows(self) -> int:
        """Rows this endpoint holds in memory (open and late buffers, closed windows)."""
        pending = sum(
            p.meta.rows if p.batch is not None else sum(len(b) for b in p.held if b is not None)
            for p in self.pending.values()
        )
        return pending + sum(b.held for b in (*self.open.values(), *self.late.values()))

    def spill(self, rows: int) -> int:
        """Free at least `rows` held rows if there are that many: the oldest windows go
        first (they close first and are read back once). Returns the rows freed."""
        if self.read_log is None:
            return 0
        freed = 0
        for _, pending in sorted(self.pending.items(), key=lambda item: item[0]):
            if freed >= rows:
                return freed
            if pending.batch is not None:
                freed += pending.meta.rows
                pending.batch = None
                pending.held = [None] * len(pending.seqs)
            else:
                freed += sum(len(b) for b in pending.held if b is not None)
                pending.held = [None] * len(pending.held)
        for _, buf in sorted([*self.late.items(), *self.open.items()], key=lambda item: item[0]):
            if freed >= rows:
                break
            freed += buf.spill()
        return freed

    def ack(self, start: float, late: bool) -> None:
        """The writer committed this window: forget it (its seqs stay known for a while
        so a delayed duplicate of the same record is not taken for a late event)."""
        done = self.pending.pop((start, late), None)
        if done is None:
            return
        for seq in done.meta.seqs:
            self._seen.discard(seq)
            self._recent.append(seq)
            self._recent_set.add(seq)
        while len(self._recent) > self.RECENT_SEQS:
            self._recent_set.discard(self._recent.popleft())

    # -- live view -----------------------------------------------------------------------

    def buffered(self) -> dict[str, float | int | None]:
        """Totals over events not yet committed (open, late and pending windows)."""
        rows = errors = late_rows = 0
        first = last = None
        groups = [(b, False) for b in self.open.values()] + [(b, True) for b in self.late.values()]
        for buf, is_late in groups:
            rows += buf.rows
            late_rows += buf.rows if is_late else 0
            for x in buf.summaries:
                errors += x.errors
                if x.first is not None and x.last is not None:
                    first = x.first if first is None else min(first, x.first)
                    last = x.last if last is None else max(last, x.last)
        for p in self.pending.values():
            rows += p.meta.rows
            late_rows += p.meta.rows if p.meta.late else 0
            errors += p.meta.error_events
            if p.meta.first_event is not None:
                first = p.meta.first_event if first is None else min(first, p.meta.first_event)
            if p.meta.last_event is not None:
                last = p.meta.last_event if last is None else max(last, p.meta.last_event)
        return {"rows": rows, "errors": errors, "late": late_rows, "first": first, "last": last}
