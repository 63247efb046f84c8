"""The LMDB environment under `{data_dir}/lmdb` and what every table shares: the named
databases, key layout, and a map that grows on demand (`growing`), so a full map never
wedges the daemon.

Several processes may open the same environment: LMDB serializes their write
transactions, so read-modify-write inside one write transaction is safe across processes.
"""

from __future__ import annotations

import functools
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lmdb

from modelmon_daemon.core.records import pack, unpack

DB_NAMES = (
    "meta",
    "endpoints",
    "state",
    "last_analyzed",
    "latest",
    "routes",
    "wal",
    "pending",
    "app_events",
    "alerts",
    "alert_state",
    "alert_history",
    "outbox",
    "labels",
    "predictions",
    "joined",
    "detectors",
)
SEP = b"\x00"
SEQ = struct.Struct(">Q")


class StoreFull(RuntimeError):
    """The map reached storage.lmdb_max_map_size: writes wait until commits free room."""


class _SharedExclusiveLock:
    """Transactions share it; a map resize takes it alone (LMDB requires that no
    transaction of this process is open while the map changes). Shared holders may nest."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False

    @contextmanager
    def shared(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if not self._shared:
                    self._cond.notify_all()

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive or self._shared:
                self._cond.wait()
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


def growing(method: Callable[..., Any]) -> Callable[..., Any]:
    """Run a store method under the shared lock; when the map is full, double it (up to
    the maximum) and run the method again (its transaction was aborted, so nothing
    happened); when another process grew it, adopt the new size and run it again."""

    @functools.wraps(method)
    def run(self: LmdbEnvironment, *args: Any, **kwargs: Any) -> Any:
        if self._lock_depth.value:  # nested inside another guarded method
            return method(self, *args, **kwargs)
        for _ in range(64):
            grow_to = None
            with self._lock.shared():
                self._lock_depth.value = 1
                try:
                    return method(self, *args, **kwargs)
                except lmdb.MapResizedError:
                    grow_to = 0
                except lmdb.MapFullError:
                    grow_to = self._next_map_size()
                finally:
                    self._lock_depth.value = 0
            self._resize(grow_to)
        raise StoreFull("the LMDB map could not be resized")

    return run


class _Depth(threading.local):
    value = 0


def compound_key(*parts: str) -> bytes:
    # a list, not a generator: join sizes it once (a tick makes ~30 keys per window)
    return SEP.join([p.encode() for p in parts])


def wal_key(uid: str, seq: int) -> bytes:
    return uid.encode() + SEP + SEQ.pack(seq)


class LmdbEnvironment:
    """Every public method of a table runs in its own transaction(s) under `growing`."""

    def __init__(self, data_dir: str | Path, map_size: int, max_map_size: int = 0) -> None:
        path = Path(data_dir) / "lmdb"
        path.mkdir(parents=True, exist_ok=True)
        self.max_map_size = max(max_map_size or 1024**4, map_size)
        self.full_since: float | None = None  # when a write last found no room (0 = never)
        self.grown = 0
        self._lock = _SharedExclusiveLock()
        self._lock_depth = _Depth()
        self.env = lmdb.open(
            str(path),
            map_size=map_size,
            max_dbs=len(DB_NAMES) + 4,
            max_readers=512,
            sync=True,
            metasync=True,
        )
        self.env.reader_check()
        self.db = {name: self.env.open_db(name.encode()) for name in DB_NAMES}

    def close(self) -> None:
        self.env.close()

    def _next_map_size(self) -> int:
        current = int(self.env.info()["map_size"])
        if current >= self.max_map_size:
            self.full_since = self.full_since or time.time()
            raise StoreFull(
                f"LMDB map is full at storage.lmdb_max_map_size ({self.max_map_size} bytes)"
            )
        return min(current * 2, self.max_map_size)

    def _resize(self, size: int) -> None:
        with self._lock.exclusive():
            if size == 0 or size > int(self.env.info()["map_size"]):
                self.env.set_mapsize(size)
                if size:
                    self.grown += 1
        self.full_since = None

    @growing
    def usage(self) -> dict[str, Any]:
        """Map size, bytes in use (pages up to the last one written) and whether writes
        are refused for want of room."""
        info, stat = self.env.info(), self.env.stat()
        return {
            "map_size_bytes": int(info["map_size"]),
            "max_map_size_bytes": self.max_map_size,
            "used_bytes": int((info["last_pgno"] + 1) * stat["psize"]),
            "resizes": self.grown,
            "full": self.full_since is not None,
        }

    @growing
    def get_meta(self, key: str, default: Any = None) -> Any:
        with self.env.begin(db=self.db["meta"]) as txn:
            raw = txn.get(key.encode())
        return default if raw is None else unpack(raw)

    @growing
    def put_meta(self, key: str, value: Any) -> None:
        with self.env.begin(db=self.db["meta"], write=True) as txn:
            txn.put(key.encode(), pack(value))

    def _prefixed_keys(self, txn: Any, db: str, name: str) -> list[bytes]:
        prefix = name.encode() + SEP
        keys = []
        cur = txn.cursor(db=self.db[db])
        if cur.set_range(prefix):
            for key in cur.iternext(keys=True, values=False):
                if not key.startswith(prefix):
                    break
                keys.append(bytes(key))
        return keys

    @growing
    def prefixed_items(self, db: str, name: str) -> list[tuple[str, Any]]:
        """(key after the prefix, unpacked value) of every entry of `name` in `db`."""
        prefix = name.encode() + SEP
        out: list[tuple[str, Any]] = []
        with self.env.begin(db=self.db[db]) as txn:
            cur = txn.cursor()
            if cur.set_range(prefix):
                for k, value in cur:
                    if not k.startswith(prefix):
                        break
                    out.append((k[len(prefix) :].decode(), unpack(value)))
        return out
