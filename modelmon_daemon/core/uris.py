"""URIs of file systems pyarrow opens (the Parquet tree, reference folders): telling them
from local paths, and showing them without the credentials they may carry."""

from __future__ import annotations

import re
import urllib.parse


def is_uri(path: str) -> bool:
    """A URI (scheme://…), not a local path."""
    return bool(re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", path))


_SECRET_PARAMS = ("access_key", "secret_key", "session_token", "password", "account_key")


def redacted_uri(uri: str) -> str:
    """The URI to show (status, logs, errors): credentials in it (user:secret@, or
    parameters such as secret_key or session_token) replaced by ***."""
    if not is_uri(uri):
        return uri
    parts = urllib.parse.urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rsplit("@", 1)[1]
    query = urllib.parse.urlencode(
        [
            (k, "***" if k.lower() in _SECRET_PARAMS else v)
            for k, v in urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
        ],
        safe="*:",
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
