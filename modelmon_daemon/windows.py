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
from dataclasses import dataclass, field

from modelmon_daemon.records import ColumnBatch, WindowMeta


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
class _Buffered:
    seqs: list[int] = field(default_factory=list)
    batches: list[ColumnBatch] = field(default_factory=list)
    rows: int = 0

    def add(self, seq: int, batch: ColumnBatch) -> None:
        self.seqs.append(seq)
        self.batches.append(batch)
        self.rows += len(batch)


@dataclass
class PendingWindow:
    meta: WindowMeta
    batch: ColumnBatch


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
    ) -> None:
        self.uid = uid
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
        batch = ColumnBatch.concat(buf.batches, self.n_features, self.n_outputs)
        ts = batch.timestamps
        meta = WindowMeta(
            uid=self.uid,
            start=start,
            end=start + self.base_period,
            seqs=sorted(buf.seqs),
            rows=len(batch),
            late=late,
            error_events=sum(b.error_events for b in buf.batches),
            first_event=float(ts.min()) if len(ts) else None,
            last_event=float(ts.max()) if len(ts) else None,
        )
        self.pending[(start, late)] = PendingWindow(meta, batch)

    def pending_metas(self) -> list[WindowMeta]:
        metas = [p.meta for p in self.pending.values()]
        return sorted(metas, key=lambda m: (m.late, m.start))

    def window_batch(self, start: float, late: bool) -> ColumnBatch:
        return self.pending[(start, late)].batch

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
            for b in buf.batches:
                errors += b.error_events
                if len(b):
                    lo, hi = float(b.timestamps.min()), float(b.timestamps.max())
                    first = lo if first is None else min(first, lo)
                    last = hi if last is None else max(last, hi)
        for p in self.pending.values():
            rows += p.meta.rows
            late_rows += p.meta.rows if p.meta.late else 0
            errors += p.meta.error_events
            if p.meta.first_event is not None:
                first = p.meta.first_event if first is None else min(first, p.meta.first_event)
            if p.meta.last_event is not None:
                last = p.meta.last_event if last is None else max(last, p.meta.last_event)
        return {"rows": rows, "errors": errors, "late": late_rows, "first": first, "last": last}
