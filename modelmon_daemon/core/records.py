"""The records that travel between the parts: batches of events, specs, results.

A ColumnBatch holds events as columns (numpy arrays), which is how they are logged,
sent to actors and written to Parquet: never as lists of dicts.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, fields
from functools import cached_property
from typing import Any, NamedTuple, cast

import msgpack
import msgspec
import numpy as np

from modelmon_daemon.core.enums import ResultKind, ResultStatus

# "0", "1", ...: the row numbers of generated request ids, made once (up to 64k rows)
_ROW_NUMBERS: list[str] = []
_ROW_NUMBERS_CACHED = 1 << 16


class IdRun(NamedTuple):
    """Rows `first` .. `first + n - 1` of one prefix's generated ids."""

    prefix: str
    first: int
    n: int


@dataclass(frozen=True)
class GeneratedIds:
    """Request ids the daemon made for rows sent without one: a prefix and the row number
    ("<prefix>0", "<prefix>1", ...). Kept as runs of (prefix, first row, rows) until
    something reads them (the events file, a label join), so the ingest path, the log
    record, a window joined from many records and the hand-off to the actors carry a few
    values instead of n strings. Reads like an object array."""

    runs: tuple[IdRun, ...]

    @staticmethod
    def new(prefix: str, n: int) -> GeneratedIds:
        return GeneratedIds((IdRun(prefix, 0, n),))

    @cached_property
    def n(self) -> int:
        return sum(run.n for run in self.runs)

    def __len__(self) -> int:
        return self.n

    def tolist(self) -> list[str]:
        ids: list[str] = []
        for prefix, first, count in self.runs:
            end = first + count
            cached = max(first, min(end, _ROW_NUMBERS_CACHED))
            if len(_ROW_NUMBERS) < cached:
                _ROW_NUMBERS.extend(str(r) for r in range(len(_ROW_NUMBERS), cached))
            ids.extend([prefix + r for r in _ROW_NUMBERS[first:cached]])
            ids.extend(f"{prefix}{r}" for r in range(cached, end))
        return ids

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.empty(self.n, dtype=object)
        out[:] = self.tolist()
        return out if dtype is None else out.astype(dtype)

    def __getitem__(self, index: Any) -> np.ndarray:
        return np.asarray(self)[index]

    def take(self, index: np.ndarray) -> RequestIds:
        """The ids at `index` (an index array or boolean mask): still runs when the rows
        are consecutive (a batch split at a window's end), else strings."""
        index = np.asarray(index)
        rows = np.flatnonzero(index) if index.dtype == bool else index
        if rows.size == 0:
            return GeneratedIds(())
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo != rows.size or (rows.size > 1 and not bool(np.all(np.diff(rows) == 1))):
            return np.asarray(self)[rows]
        return self.slice(lo, hi)

    def slice(self, lo: int, hi: int) -> GeneratedIds:
        """Rows lo .. hi - 1, as runs."""
        runs, at = [], 0
        for prefix, first, count in self.runs:
            a, b = max(lo, at), min(hi, at + count)
            if a < b:
                runs.append(IdRun(prefix, first + a - at, b - a))
            at += count
        return GeneratedIds(tuple(runs))

    @staticmethod
    def join(parts: list[GeneratedIds]) -> GeneratedIds:
        """One after the other; a run that continues the one before it is joined to it."""
        runs: list[IdRun] = []
        for part in parts:
            for run in part.runs:
                if run.n == 0:
                    continue
                if (
                    runs
                    and runs[-1].prefix == run.prefix
                    and (runs[-1].first + runs[-1].n == run.first)
                ):
                    last = runs[-1]
                    runs[-1] = IdRun(last.prefix, last.first, last.n + run.n)
                else:
                    runs.append(run)
        return GeneratedIds(tuple(runs))


RequestIds = np.ndarray | GeneratedIds


@dataclass
class ColumnBatch:
    """Rows of one endpoint: timestamps (epoch s), features (n x F float64, NaN = missing),
    outputs (one array per output), request ids, latency (us, NaN = unknown), error text.
    Categorical features keep their values (strings, integers; None = missing) in
    `categorical`, by feature index; their column of `features` is all NaN."""

    timestamps: np.ndarray
    features: np.ndarray
    outputs: list[np.ndarray]
    request_ids: RequestIds  # an object array of strings, or ids the daemon generated
    latency_us: np.ndarray
    errors: np.ndarray
    error_events: int = 0
    categorical: dict[int, np.ndarray] = field(default_factory=dict)
    unexpected: dict[str, int] = field(default_factory=dict)  # column -> rows that had it
    # predictions each row stands for (MLRun's sampling: effective_sample_count x 100 /
    # sampling_percentage over the event's rows); None = one each
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

    def predictions(self) -> float:
        """How many predictions the rows stand for (their count when not sampled)."""
        return float(self.weights.sum()) if self.weights is not None else float(len(self))

    def take(self, index: np.ndarray) -> ColumnBatch:
        """The rows at `index` (an index array or boolean mask)."""
        errors_taken = self.errors[index]
        return ColumnBatch(
            timestamps=self.timestamps[index],
            features=self.features[index],
            outputs=[o[index] for o in self.outputs],
            request_ids=_take_ids(self.request_ids, index),
            latency_us=self.latency_us[index],
            errors=errors_taken,
            error_events=0,
            categorical={j: c[index] for j, c in self.categorical.items()},
            unexpected=dict(self.unexpected),
            weights=None if self.weights is None else self.weights[index],
        )

    @staticmethod
    def concat(batches: list[ColumnBatch], n_features: int, n_outputs: int) -> ColumnBatch:
        if not batches:
            return empty_batch(n_features, n_outputs)
        if len(batches) == 1:
            return batches[0]
        outputs = []
        for j in range(n_outputs):
            parts = [b.outputs[j] for b in batches]
            if any(p.dtype == object for p in parts):
                parts = [p.astype(object) for p in parts]
            outputs.append(np.concatenate(parts))
        return ColumnBatch(
            timestamps=np.concatenate([b.timestamps for b in batches]),
            features=np.concatenate([b.features for b in batches]),
            outputs=outputs,
            request_ids=_concat_ids([b.request_ids for b in batches]),
            latency_us=np.concatenate([b.latency_us for b in batches]),
            errors=np.concatenate([b.errors for b in batches]),
            error_events=sum(b.error_events for b in batches),
            categorical={
                j: np.concatenate([b.categorical.get(j, _nones(len(b))) for b in batches])
                for j in sorted({j for b in batches for j in b.categorical})
            },
            unexpected=_add_counts(b.unexpected for b in batches),
            weights=None
            if all(b.weights is None for b in batches)
            else np.concatenate(
                [b.weights if b.weights is not None else np.ones(len(b)) for b in batches]
            ),
        )

    def to_wire(self) -> dict[str, Any]:
        """A msgpack-able dict; numeric columns as raw little-endian bytes."""
        return {
            "n": len(self),
            "ts": _f8(self.timestamps),
            "x": _f8(self.features),
            "f": int(self.features.shape[1]),
            "o": [_column_to_wire(o) for o in self.outputs],
            **_ids_to_wire(self.request_ids),
            "l": _f8(self.latency_us),
            **_errors_to_wire(self.errors),
            "ee": self.error_events,
            "c": {int(j): c.tolist() for j, c in self.categorical.items()},
            "u": self.unexpected,
            **({} if self.weights is None else {"w": _f8(self.weights)}),
        }

    @staticmethod
    def from_wire(wire: dict[str, Any], copy: bool = True) -> ColumnBatch:
        """`copy=False`: numeric columns are read-only views of the wire's bytes (for a
        reader that only reads them, as the writer does)."""
        n = int(wire["n"])
        n_features = int(wire["f"])

        def f8(data: bytes) -> np.ndarray:
            values = np.frombuffer(data, dtype="<f8")
            return values.copy() if copy else values

        return ColumnBatch(
            timestamps=f8(wire["ts"]),
            features=f8(wire["x"]).reshape(n, n_features),
            outputs=[_column_from_wire(o) for o in wire["o"]],
            request_ids=_ids_from_wire(wire),
            latency_us=f8(wire["l"]),
            errors=_nones(n) if wire.get("e") is None else _object_array(wire["e"]),
            error_events=int(wire["ee"]),
            categorical={int(j): _object_array(v) for j, v in (wire.get("c") or {}).items()},
            unexpected=dict(wire.get("u") or {}),
            weights=f8(wire["w"]) if "w" in wire else None,
        )


def _errors_to_wire(errors: np.ndarray) -> dict[str, Any]:
    """Rows without an error (most batches: all of them) write no list of nils."""
    values = errors.tolist()
    if values.count(None) == len(values):
        return {}
    return {"e": [None if e is None else str(e) for e in values]}


def _take_ids(ids: RequestIds, index: np.ndarray) -> RequestIds:
    return ids.take(index) if isinstance(ids, GeneratedIds) else ids[index]


def _concat_ids(parts: list[RequestIds]) -> RequestIds:
    """Generated ids stay runs when every part's are generated; else strings."""
    if all(isinstance(p, GeneratedIds) for p in parts):
        return GeneratedIds.join(cast("list[GeneratedIds]", parts))
    return np.concatenate([np.asarray(p, dtype=object) for p in parts])


def _ids_to_wire(ids: RequestIds) -> dict[str, Any]:
    if isinstance(ids, GeneratedIds):
        if len(ids.runs) == 1 and ids.runs[0].first == 0:
            return {"rg": [ids.runs[0].prefix, ids.n]}
        return {"rgs": [list(run) for run in ids.runs]}
    return {"r": [str(r) for r in ids.tolist()]}


def _ids_from_wire(wire: dict[str, Any]) -> RequestIds:
    if "rg" in wire:
        prefix, n = wire["rg"]
        ids = GeneratedIds.new(str(prefix), int(n))
    elif "rgs" in wire:
        runs = []
        for run in wire["rgs"]:
            if not (
                isinstance(run, list)
                and len(run) == 3
                and isinstance(run[0], str)
                and all(type(v) is int and v >= 0 for v in run[1:])
            ):
                raise ValueError(f"bad run of generated ids: {run!r}")
            runs.append(IdRun(run[0], run[1], run[2]))
        ids = GeneratedIds(tuple(runs))
    else:
        return np.asarray(wire["r"], dtype=object)
    if ids.n != int(wire["n"]):
        raise ValueError(f"generated ids for {ids.n} rows in a record of {wire['n']}")
    return ids


def _add_counts(parts: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for part in parts:
        for key, n in part.items():
            out[key] = out.get(key, 0) + n
    return out


def _nones(n: int) -> np.ndarray:
    return np.full(n, None, dtype=object)


def _object_array(values: list[Any]) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


def _f8(array: np.ndarray) -> bytes:
    return np.ascontiguousarray(array, dtype="<f8").tobytes()


def _column_to_wire(column: np.ndarray) -> dict[str, Any]:
    if column.dtype == object:
        return {"obj": column.tolist()}
    return {"f8": _f8(column)}


def _column_from_wire(wire: dict[str, Any]) -> np.ndarray:
    if "f8" in wire:
        return np.frombuffer(wire["f8"], dtype="<f8").copy()
    return _object_array(wire["obj"])


def empty_batch(n_features: int, n_outputs: int) -> ColumnBatch:
    return ColumnBatch(
        timestamps=np.empty(0, dtype=np.float64),
        features=np.empty((0, n_features), dtype=np.float64),
        outputs=[np.empty(0, dtype=np.float64) for _ in range(n_outputs)],
        request_ids=np.empty(0, dtype=object),
        latency_us=np.empty(0, dtype=np.float64),
        errors=np.empty(0, dtype=object),
    )


# msgspec's MessagePack codec: the bytes msgpack-python writes (use_bin_type), 3-5x
# faster to write and 1.5-2x faster to read for the records stored on every tick
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder()


def pack(obj: Any) -> bytes:
    try:
        return _ENCODER.encode(obj)
    except TypeError:  # subclasses of str, int or float (numpy's float64): msgpack-python
        return msgpack.packb(obj, use_bin_type=True)  # writes them as their base type


def spec_version(raw: bytes) -> str:
    """An endpoint record's version: a digest of its stored bytes (application actors
    unpack reference stats again only when it changes)."""
    return hashlib.sha1(raw).hexdigest()[:16]


def unpack(data: bytes | memoryview) -> Any:
    """A stored record (bytes, or a buffer of them); malformed bytes raise ValueError
    (msgspec.DecodeError)."""
    return _DECODER.decode(data)


def unpack_fields(data: bytes, fields: frozenset[str]) -> dict[str, Any]:
    """Only `fields` of a packed map; the other values are skipped, not built (an
    endpoint record's reference stats are most of its bytes and objects)."""
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    out: dict[str, Any] = {}
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        if key in fields:
            out[key] = unpacker.unpack()
        else:
            unpacker.skip()
    return out


@dataclass
class EndpointSpec:
    """What a registration says of an endpoint: identity, features, reference stats."""

    uid: str
    project: str
    name: str
    model: str = ""
    function_uri: str = ""
    feature_names: list[str] = field(default_factory=list)
    version: str = ""  # the model's version (MLRun's `model:version` or `version`)
    label_names: list[str] = field(default_factory=list)
    feature_stats: dict[str, Any] = field(default_factory=dict)
    created: float = 0.0
    auto_registered: bool = False
    model_class: str = ""  # MLRun's `class` / `model_class` of the serving model
    labels: dict[str, str] = field(default_factory=dict)  # MLRun's model labels
    model_type: str = ""  # "classification" | "regression": labels are joined and scored
    reference_performance: dict[str, float] = field(default_factory=dict)
    calibrate: bool = False
    categorical_features: list[str] = field(default_factory=list)
    multivariate: dict[str, Any] = field(default_factory=dict)  # PCA fitted on the reference
    prediction_stats: dict[str, Any] = field(default_factory=dict)
    # performance estimation: class key -> output carrying its score, and the estimator
    # (isotonic calibration, reference accuracy, calibration check) fitted at registration
    score_outputs: dict[str, str] = field(default_factory=dict)
    performance_estimator: dict[str, Any] = field(default_factory=dict)

    @property
    def output_names(self) -> list[str]:
        return list(self.label_names)

    @cached_property
    def categorical_indices(self) -> tuple[int, ...]:
        """Positions of the categorical features (derived once; specs are replaced, not
        mutated, when an endpoint is re-registered)."""
        names = set(self.categorical_features)
        return tuple(j for j, name in enumerate(self.feature_names) if name in names)

    def to_dict(self) -> dict[str, Any]:
        """A shallow dict of the fields: `asdict` would deep-copy the reference stats and
        the PCA model on every call (milliseconds, on every record read)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EndpointSpec:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def result_full_name(project: str, result: dict[str, Any]) -> str:
    """`{project}.{application}.{result|metric}.{name}` of a result as committed (its
    dict): the key of its latest value in LMDB and the `full_name` column in Parquet."""
    return f"{project}.{result['application']}.{result['type']}.{result['name']}"


@dataclass
class ResultRecord:
    """One value an application produced for one window: a result (with kind and
    status) or a metric (value only)."""

    application: str
    name: str
    type: str  # "result" | "metric"
    value: float
    start: float
    end: float
    kind: ResultKind | None = None
    status: ResultStatus | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    sample_size: int = 0

    def to_dict(self) -> dict[str, Any]:
        value = self.value
        return {
            "application": self.application,
            "name": self.name,
            "type": self.type,
            "kind": None if self.kind is None else int(self.kind),
            "value": None if value is None or not math.isfinite(value) else float(value),
            "status": None if self.status is None else int(self.status),
            "start": self.start,
            "end": self.end,
            "extra": self.extra,
            "sample_size": self.sample_size,
        }


@dataclass
class WindowMeta:
    """A closed window (or a batch of late events) of one endpoint, ready to persist."""

    uid: str
    start: float
    end: float
    seqs: list[int]
    rows: int
    late: bool = False
    error_events: int = 0
    first_event: float | None = None
    last_event: float | None = None


@dataclass
class AppOutput:
    """What one application run gave for one window."""

    application: str
    results: list[ResultRecord] = field(default_factory=list)
    failure: str | None = None
    endpoint_updates: dict[str, Any] = field(default_factory=dict)

    def to_wire(self) -> OutputWire:
        return (
            self.application,
            [r.to_dict() for r in self.results],
            self.failure,
            self.endpoint_updates,
        )


# one application's outputs for one window as the writer takes them: (application, its
# results as ResultRecord.to_dict gives them, failure, endpoint updates)
OutputWire = tuple[str, list[dict[str, Any]], str | None, dict[str, Any]]
# an application call's outputs, per window (None: not run, the endpoint's record missing)
CallOutputs = list[list[AppOutput] | None]


def pack_outputs(outputs: CallOutputs) -> bytes | CallOutputs:
    """An application call's outputs packed once (msgpack) for the writer. Ray pickles
    thousands of small records with Python code per object (cloudpickle's reducer
    override); bytes cross as they are, and the writer reads them faster than unpickling
    too. Outputs msgpack cannot hold (a user application's numpy integer in extra_data)
    stay objects, pickled as before."""
    wire = [None if out is None else [o.to_wire() for o in out] for out in outputs]
    try:
        return pack(wire)
    except (TypeError, ValueError, OverflowError):
        return outputs


def unpack_outputs(packed: bytes | CallOutputs) -> list[list[OutputWire] | None]:
    """pack_outputs' answer, per window, as OutputWire (unpacked, each is a list of the
    same four values: read by position, never changed)."""
    if not isinstance(packed, bytes | memoryview):
        return [None if out is None else [o.to_wire() for o in out] for out in packed]
    return cast(list[list[OutputWire] | None], unpack(packed))


def log_value(start: float, wire: dict[str, Any]) -> bytes:
    """A durability-log record as stored: its window start and its batch (to_wire)."""
    return pack({"w": start, "b": wire})


def from_log_value(value: bytes) -> tuple[float, dict[str, Any]]:
    """(window start, batch wire) of a stored log record."""
    record = unpack(value)
    return float(record["w"]), record["b"]
