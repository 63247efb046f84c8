"""Reference files on an object store: a `reference.path` such as
`s3://bucket/refs/ref.parquet`, read only under a `daemon.reference_dirs` entry that is a
URI (`s3://bucket/refs?region=…`).

The client's URI names a file and nothing else: no query, credentials or fragment, so a
request can never point the daemon at another endpoint or account (the configured entry
gives those). A file is copied once per version (its modification time and size) into a
private folder and read from there as a local file; errors name the URI the client gave.
"""

from __future__ import annotations

import atexit
import hashlib
import os
import shutil
import tempfile
import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath

import pyarrow.fs as pafs

from modelmon_daemon.core.errors import ApiError, Forbidden, Unavailable, one_line

FIELD = "reference.path"
LOCAL_COPIES = 8  # versions of remote files kept on local disk, least recently used out


@dataclass(frozen=True)
class RemoteFile:
    shown: str  # the URI as the client gave it: what messages name
    fs: pafs.FileSystem
    path: str  # the file's path in `fs`


def _parts(uri: str) -> tuple[str, str, list[str]]:
    """(scheme, host or bucket, path segments) of a URI, credentials left out."""
    split = urllib.parse.urlsplit(uri)
    host = split.netloc.rsplit("@", 1)[-1]
    return split.scheme.lower(), host, [s for s in split.path.split("/") if s]


_FILESYSTEMS: dict[str, tuple[pafs.FileSystem, str]] = {}
_FS_LOCK = threading.Lock()


def _filesystem(entry: str) -> tuple[pafs.FileSystem, str]:
    """The file system and root of a configured entry, opened once (an S3 one may look
    up its bucket's region over the network)."""
    with _FS_LOCK:
        if entry not in _FILESYSTEMS:
            _FILESYSTEMS[entry] = pafs.FileSystem.from_uri(entry)
        return _FILESYSTEMS[entry]


def find(value: str, entries: Sequence[str]) -> RemoteFile:
    """The remote file `value` names, if it lies under one of `entries` (configured
    URIs); 400 for a URI that carries more than a file's name, 403 outside them. Checked
    before anything is fetched."""
    split = urllib.parse.urlsplit(value)
    if split.query or split.fragment or "@" in split.netloc or not split.netloc:
        raise ApiError(
            f"{FIELD}: a URI names a bucket and a file only (no query, credentials or "
            "fragment: daemon.reference_dirs gives those)",
            {"field": FIELD},
        )
    scheme, host, segments = _parts(value)
    if any(s in (".", "..") for s in segments) or not segments:
        raise ApiError(f"{FIELD}: not a file's URI", {"field": FIELD})
    for entry in entries:
        e_scheme, e_host, e_segments = _parts(entry)
        if (scheme, host) == (e_scheme, e_host) and segments[: len(e_segments)] == e_segments:
            if len(segments) == len(e_segments):
                break  # the folder itself
            fs, root = _filesystem(entry)
            rest = "/".join(segments[len(e_segments) :])
            return RemoteFile(value, fs, f"{root.rstrip('/')}/{rest}")
    raise Forbidden(f"{FIELD} must lie under daemon.reference_dirs", {"field": FIELD})


class _Copies:
    """Local copies of remote files, one per (URI, version), the last LOCAL_COPIES kept."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._folder: str | None = None
        self._kept: OrderedDict[str, str] = OrderedDict()  # local path -> URI shown

    def folder(self) -> str:
        with self._lock:
            if self._folder is None:
                self._folder = tempfile.mkdtemp(prefix="modelmon-references-")
                atexit.register(shutil.rmtree, self._folder, True)
            return self._folder

    def shown(self, path: str) -> str:
        return self._kept.get(path, path)

    def local(self, remote: RemoteFile) -> str:
        info = remote.fs.get_file_info(remote.path)
        if info.type != pafs.FileType.File:
            raise ApiError(f"reference file {remote.shown}: no such file", {"field": FIELD})
        version = f"{info.mtime_ns or 0}-{info.size or 0}"
        digest = hashlib.sha1(f"{remote.shown}\n{version}".encode()).hexdigest()[:20]
        suffix = PurePosixPath(remote.path).suffix.lower()
        path = os.path.join(self.folder(), f"{digest}{suffix}")
        with self._lock:
            if path in self._kept:
                self._kept.move_to_end(path)
                return path
        partial = f"{path}.{threading.get_ident()}.part"
        with remote.fs.open_input_stream(remote.path) as source, open(partial, "wb") as out:
            while chunk := source.read(1 << 20):
                out.write(chunk)
        os.replace(partial, path)
        with self._lock:
            self._kept[path] = remote.shown
            while len(self._kept) > LOCAL_COPIES:
                old, _ = self._kept.popitem(last=False)
                if os.path.exists(old):
                    os.unlink(old)
        return path


COPIES = _Copies()


def local_copy(remote: RemoteFile) -> str:
    """A local file with the remote file's bytes (fetched once per version)."""
    try:
        return COPIES.local(remote)
    except ApiError:
        raise
    except OSError as exc:  # the store is away or refuses: retry later
        raise Unavailable(
            f"reference file {remote.shown} cannot be read: {one_line(exc)}",
            code="reference_unavailable",
        ) from None


def shown(path: str) -> str:
    """How a reference file is named in messages: the client's URI for a local copy."""
    return COPIES.shown(path)
