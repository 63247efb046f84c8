import numpy as np

from modelmon_daemon.core.records import ColumnBatch
from modelmon_daemon.core.windows import EndpointWindows, close_limit, window_start
from tests.helpers import make_batch

P, L = 60.0, 10.0


def batch(*ts):
    n = len(ts)
    return ColumnBatch(
        timestamps=np.array(ts, dtype=float),
        features=np.zeros((n, 1)),
        outputs=[np.zeros(n)],
        request_ids=np.array([str(t) for t in ts], dtype=object),
        latency_us=np.full(n, np.nan),
        errors=np.array([None] * n, dtype=object),
    )


def feed(w, seq, *ts, arrival=None):
    return w.add(seq, window_start(ts[0], P), batch(*ts), arrival=arrival)


def test_window_start_is_aligned_to_epoch():
    assert window_start(0.0, P) == 0.0
    assert window_start(59.999, P) == 0.0
    assert window_start(60.0, P) == 60.0
    assert window_start(-1.0, P) == -60.0


def test_close_limit_from_watermark_and_from_silence():
    assert close_limit(130.0, 130.0, 131.0, P, L) == 120.0  # watermark 120 closes [60,120)
    assert close_limit(129.0, 129.0, 130.0, P, L) == 60.0
    # quiet for L and the clock past the window end: closes up to now's window
    assert close_limit(65.0, 65.0, 200.0, P, L) == 180.0
    assert close_limit(None, None, 200.0, P, L) is None


def test_watermark_closes_whole_windows_in_order():
    w = EndpointWindows("e", 1, 1, P, L)
    feed(w, 1, 5.0, 50.0, arrival=1000.0)
    feed(w, 2, 69.0, arrival=1000.0)
    assert w.close(now=1000.5) == []  # watermark 59 has not reached the end (60)
    feed(w, 3, 130.0, arrival=1000.6)  # watermark 120 reaches the ends of both
    metas = w.close(now=1000.7)
    assert [(m.start, m.rows, m.late) for m in metas] == [(0.0, 2, False), (60.0, 1, False)]
    assert w.closed_through == 120.0


def test_quiet_endpoint_closes_past_windows_by_wall_clock():
    w = EndpointWindows("e", 1, 1, P, L)
    feed(w, 1, 5.0, arrival=10_000.0)  # back-filled: stamped long ago
    assert w.close(now=10_005.0) == []  # not quiet yet
    metas = w.close(now=10_010.0)
    assert [(m.start, m.rows) for m in metas] == [(0.0, 1)]


def test_late_event_is_kept_apart_and_not_reopened():
    w = EndpointWindows("e", 1, 1, P, L)
    feed(w, 1, 5.0, arrival=0.0)
    feed(w, 2, 200.0, arrival=0.0)
    w.close(now=1.0)
    w.ack(0.0, False)
    feed(w, 3, 30.0, arrival=2.0)  # its window [0,60) is closed
    metas = w.close(now=3.0)
    late = [m for m in metas if m.late]
    assert [(m.start, m.rows, m.seqs) for m in late] == [(0.0, 1, [3])]
    assert w.buffered()["late"] == 1


def test_pending_until_ack_and_retried_after_failed_tick():
    w = EndpointWindows("e", 1, 1, P, L)
    feed(w, 1, 5.0, arrival=0.0)
    feed(w, 2, 100.0, arrival=0.0)
    first = w.close(now=100.0)
    again = w.close(now=101.0)  # the tick failed before ack: same window comes back
    assert [m.start for m in first] == [m.start for m in again] == [0.0]
    w.ack(0.0, False)
    assert w.close(now=102.0) == []


def test_replayed_records_are_ignored():
    w = EndpointWindows("e", 1, 1, P, L)
    assert feed(w, 7, 5.0, arrival=0.0)
    assert not feed(w, 7, 5.0, arrival=0.0)
    feed(w, 8, 100.0, arrival=0.0)
    (meta,) = w.close(now=100.0)
    w.ack(meta.start, False)
    assert not feed(w, 7, 5.0, arrival=0.0)  # a delayed duplicate after commit


def test_frontier_from_storage_makes_old_windows_late():
    w = EndpointWindows("e", 1, 1, P, L, closed_through=120.0)
    feed(w, 1, 100.0, arrival=0.0)
    feed(w, 2, 130.0, arrival=0.0)
    assert w.buffered()["late"] == 1
    assert list(w.open) == [120.0]


def test_empty_windows_advance_the_frontier():
    w = EndpointWindows("e", 1, 1, P, L)
    feed(w, 1, 5.0, arrival=0.0)
    feed(w, 2, 400.0, arrival=0.0)
    metas = w.close(now=1.0)
    assert [m.start for m in metas] == [0.0]
    assert w.closed_through == 360.0


def test_spilled_windows_are_rebuilt_from_the_log_exactly():
    """Rows dropped from memory come back from the log in arrival order: the closed
    window, its meta and the live view are the same as if they had stayed."""
    log = {}

    def read_log(seqs):
        return [log[s] for s in seqs]

    def fill(w):
        rng = np.random.default_rng(1)
        for seq in range(12):
            start = 0.0 if seq < 8 else 60.0
            ts = start + np.sort(rng.uniform(0, 59, 5))
            batch = make_batch(ts, rng.normal(size=(5, 2)), outputs=rng.normal(size=5))
            log[seq] = batch
            w.add(seq, start, batch, arrival=100.0)

    kept = EndpointWindows("ep", 2, 1, 60.0, 5.0, read_log=read_log)
    spilled = EndpointWindows("ep", 2, 1, 60.0, 5.0, read_log=read_log)
    fill(kept)
    fill(spilled)
    assert spilled.held_rows() == 60
    assert spilled.spill(30) == 40  # the oldest window first, whole
    assert spilled.held_rows() == 20
    assert spilled.buffered() == kept.buffered()
    assert kept.close(200.0) == spilled.close(200.0)
    a, b = kept.window_batch(0.0, False), spilled.window_batch(0.0, False)
    np.testing.assert_array_equal(a.timestamps, b.timestamps)
    np.testing.assert_array_equal(a.features, b.features)
    np.testing.assert_array_equal(a.outputs[0], b.outputs[0])
    # a closed window can be spilled too, and is still rebuilt
    assert spilled.spill(100) == 20
    assert spilled.held_rows() == 0
    c = spilled.window_batch(60.0, False)
    np.testing.assert_array_equal(c.features, kept.window_batch(60.0, False).features)


def test_without_a_log_reader_nothing_is_spilled():
    w = EndpointWindows("ep", 1, 1, 60.0, 5.0)
    w.add(1, 0.0, make_batch([1.0, 2.0], [[1.0], [2.0]]), arrival=10.0)
    assert w.spill(10) == 0 and w.held_rows() == 2
