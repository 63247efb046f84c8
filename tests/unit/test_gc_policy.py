"""Cyclic garbage collected on a schedule, not automatically (core/gc_policy.py)."""

import subprocess
import sys
import textwrap

import msgpack

from modelmon_daemon.core.records import pack, unpack, unpack_fields


def test_an_actor_process_collects_cycles_on_its_thread_and_not_automatically():
    script = textwrap.dedent(
        """
        import gc, time, weakref
        from modelmon_daemon.core import gc_policy
        gc_policy.YOUNG_INTERVAL = 0.05
        gc_policy.collect_in_thread()
        gc_policy.collect_in_thread()  # once per process
        assert not gc.isenabled()
        assert sum(t.name == "gc-schedule" for t in __import__("threading").enumerate()) == 1

        class Node:
            pass

        a, b = Node(), Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        deadline = time.monotonic() + 5
        while gone() is not None and time.monotonic() < deadline:
            time.sleep(0.01)
        assert gone() is None, "the cycle was never collected"
        print("ok")
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "ok", out.stderr


def test_unpack_fields_gives_only_the_fields_asked_and_the_same_values():
    record = {
        "uid": "ep",
        "feature_names": ["a", "b"],
        "feature_stats": {"a": {"hist": [[1, 2], [0.0, 1.0, 2.0]]}},
        "project": "p",
        "nested": [{"x": 1}, [2, 3]],
    }
    raw = pack(record)
    light = unpack_fields(raw, frozenset({"uid", "feature_names", "project", "missing"}))
    full = unpack(raw)
    assert light == {k: full[k] for k in ("uid", "feature_names", "project")}
    assert unpack_fields(msgpack.packb({}), frozenset({"uid"})) == {}
