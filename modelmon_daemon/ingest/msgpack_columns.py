"""msgpack arrays of numbers read straight into numpy, without a Python object per value.

A native batch is mostly numbers: `inputs` a list of rows of floats, `outputs` and
`latency_us` lists of numbers. msgpack writes every value with a type tag, and a list
written by one encoder from one dtype has the same tag everywhere, so it is a strided
array in the body: checking the tags and viewing the payload bytes gives the column in
microseconds (decoding into Python objects and converting back costs ~1 ms per 1000x8).

Anything else (a null among the numbers, ints mixed with floats, nested maps) returns
None and is decoded the ordinary way, so the result is always what `msgpack.unpackb`
followed by `np.array(..., float64)` would give.
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

# tag -> big-endian payload dtype of scalars whose payload follows the tag
_FLOATS: dict[int, np.dtype[Any]] = {0xCA: np.dtype(">f4"), 0xCB: np.dtype(">f8")}
_INTS: dict[int, np.dtype[Any]] = {
    0xCC: np.dtype("u1"),
    0xCD: np.dtype(">u2"),
    0xCE: np.dtype(">u4"),
    0xCF: np.dtype(">u8"),
    0xD0: np.dtype("i1"),
    0xD1: np.dtype(">i2"),
    0xD2: np.dtype(">i4"),
    0xD3: np.dtype(">i8"),
}
_SCALARS: dict[int, np.dtype[Any]] = {**_FLOATS, **_INTS}
# keys whose values may come back as numpy arrays: rows (2-D, floats only, so that a
# categorical feature sent as a number reads as the same Python float) and columns (1-D)
ROW_KEYS = frozenset({"inputs"})
COLUMN_KEYS = frozenset({"outputs", "latency_us"})


def refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not accepted")


def unpack(raw: bytes) -> Any:
    """The body as msgpack gives it, with the options every msgpack body is read with."""
    return msgpack.unpackb(raw, raw=False, strict_map_key=False, ext_hook=refuse_ext, timestamp=0)


def _unpacker(view: memoryview) -> msgpack.Unpacker:
    unpacker = msgpack.Unpacker(
        raw=False,
        strict_map_key=False,
        ext_hook=refuse_ext,
        timestamp=0,
        max_buffer_size=max(len(view), 1),
    )
    unpacker.feed(view)
    return unpacker


def _array_header(body: np.ndarray, pos: int) -> tuple[int, int] | None:
    """(length, header size) of the msgpack array at `pos`, or None if none is there."""
    if pos >= body.shape[0]:
        return None
    tag = int(body[pos])
    if 0x90 <= tag <= 0x9F:
        return tag & 0x0F, 1
    if tag == 0xDC and pos + 3 <= body.shape[0]:
        return int(body[pos + 1]) << 8 | int(body[pos + 2]), 3
    if tag == 0xDD and pos + 5 <= body.shape[0]:
        return int.from_bytes(body[pos + 1 : pos + 5].tobytes(), "big"), 5
    return None


def _scalars(region: np.ndarray, tags: dict[int, np.dtype[Any]]) -> np.ndarray | None:
    """`region`: (n, 1 + width) bytes, one tagged scalar per row, or None if the tags differ
    or are not in `tags`."""
    tag = int(region[0, 0])
    dtype = tags.get(tag)
    if dtype is None or region.shape[1] != 1 + dtype.itemsize:
        return None
    if not (region[:, 0] == tag).all():
        return None
    values = np.ascontiguousarray(region[:, 1:]).view(dtype)[:, 0]
    return values.astype(np.float64 if dtype.kind == "f" else dtype.newbyteorder("="))


def numeric_column(body: np.ndarray, pos: int) -> tuple[np.ndarray, int] | None:
    """The array of numbers at `pos` and the position after it, if every value has the same
    tag (or all are fixints); else None. Floats come as float64, integers as integers (so
    `tolist()` gives back the very values msgpack would)."""
    header = _array_header(body, pos)
    if header is None or header[0] == 0:
        return None
    n, size = header
    start = pos + size
    if start >= body.shape[0]:
        return None
    first = int(body[start])
    if first < 0x80 or first >= 0xE0:  # fixints: the tag is the value
        if start + n > body.shape[0]:
            return None
        values = body[start : start + n]
        if not ((values < 0x80) | (values >= 0xE0)).all():
            return None
        return values.view(np.int8).astype(np.int64), start + n
    dtype = _SCALARS.get(first)
    if dtype is None:
        return None
    end = start + n * (1 + dtype.itemsize)
    if end > body.shape[0]:
        return None
    column = _scalars(body[start:end].reshape(n, 1 + dtype.itemsize), _SCALARS)
    return None if column is None else (column, end)


def float_rows(body: np.ndarray, pos: int) -> tuple[np.ndarray, int] | None:
    """The array of equally long rows of floats at `pos` as an (n, k) float64 matrix and
    the position after it, if every row has the same header and every value the same float
    tag; else None."""
    header = _array_header(body, pos)
    if header is None or header[0] == 0:
        return None
    n, size = header
    start = pos + size
    row = _array_header(body, start)
    if row is None or row[0] == 0 or start + row[1] >= body.shape[0]:
        return None
    k, row_header = row
    dtype = _FLOATS.get(int(body[start + row_header]))
    if dtype is None:
        return None
    stride = row_header + k * (1 + dtype.itemsize)
    end = start + n * stride
    if end > body.shape[0]:
        return None
    rows = body[start:end].reshape(n, stride)
    if not (rows[:, :row_header] == rows[0, :row_header]).all():
        return None
    values = _scalars(rows[:, row_header:].reshape(n * k, 1 + dtype.itemsize), _FLOATS)
    return None if values is None else (values.reshape(n, k), end)


def unpack_native(raw: bytes) -> Any:
    """`msgpack.unpackb(raw)`, except that in a top-level map the ROW_KEYS and COLUMN_KEYS
    values that are plain numeric arrays come back as numpy arrays. Raises what
    unpackb raises (ValueError subclasses) on a malformed body."""
    body = np.frombuffer(raw, dtype=np.uint8)
    if not body.shape[0] or not (0x80 <= body[0] <= 0x8F or body[0] in (0xDE, 0xDF)):
        return unpack(raw)
    view = memoryview(raw)
    unpacker = _unpacker(view)
    offset = 0  # of the unpacker's buffer in the body
    out: dict[Any, Any] = {}
    for _ in range(unpacker.read_map_header()):
        key = unpacker.unpack()
        fast = None
        if key in ROW_KEYS or key in COLUMN_KEYS:
            pos = offset + unpacker.tell()
            fast = (float_rows if key in ROW_KEYS else numeric_column)(body, pos)
        if fast is None:
            out[key] = unpacker.unpack()
            continue
        out[key], offset = fast
        unpacker = _unpacker(view[offset:])
    if offset + unpacker.tell() != len(raw):
        raise msgpack.ExtraData(out, raw[offset + unpacker.tell() :])
    return out
