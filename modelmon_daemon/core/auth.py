"""The daemon's bearer token: made at first start, read by the server, the CLI and the
client. A token in a 0600 file keeps other local users, and web pages in the operator's
browser, from driving the daemon."""

from __future__ import annotations

import base64
import hmac
import os
import secrets
from pathlib import Path

from modelmon_daemon.core.daemon_file import client_data_dir

TOKEN_FILE = "auth_token"
TOKEN_ENV = "MODELMON_TOKEN"


def token_path(data_dir: str | Path, token_file: str = "") -> Path:
    """`daemon.auth_token_file` if set, else `<data_dir>/auth_token`."""
    if token_file:
        return Path(token_file).expanduser().resolve()
    return Path(data_dir).expanduser().resolve() / TOKEN_FILE


class TokenFileError(ValueError):
    """The token file holds something no client could send as a bearer token."""


def _token_text(path: Path) -> str:
    """The stripped text of a token file; TokenFileError if it is not a token: one line of
    printable ASCII, what an Authorization header can carry."""
    try:
        raw = path.read_bytes().strip()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise TokenFileError(f"{path}: {exc.strerror or exc}") from None
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        raise TokenFileError(f"{path}: not a bearer token (not ASCII text)") from None
    if any(not 0x20 <= ord(c) <= 0x7E for c in text):
        raise TokenFileError(f"{path}: not a bearer token (line breaks or control characters)")
    return text


def new_token() -> str:
    """32 random bytes, URL-safe, never beginning with "-" (an operator pastes it after
    `--token` on a command line, where a leading dash reads as an option)."""
    while True:
        token = secrets.token_urlsafe(32)
        if not token.startswith("-"):
            return token


def load_or_create_token(path: Path) -> str:
    """The token in `path`, or a new random one written there with mode 0600 when the file
    is missing or empty. TokenFileError when it holds something else than a token: the
    operator's clients use that file, so it is never replaced silently."""
    try:
        existing = _token_text(path)
    except FileNotFoundError:
        existing = ""
    if existing:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)  # never leave a readable token behind
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = new_token()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    os.chmod(path, 0o600)
    return token


def find_token(explicit: str | None = None, data_dir: str | Path | None = None) -> str | None:
    """What a client sends: `--token`, then $MODELMON_TOKEN, then the data dir's file
    ($MODELMON_DAEMON_DATA_DIR or ./modelmon-data by default)."""
    if explicit:
        return explicit
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    candidates = []
    if os.environ.get("MODELMON_DAEMON_AUTH_TOKEN_FILE"):
        candidates.append(Path(os.environ["MODELMON_DAEMON_AUTH_TOKEN_FILE"]).expanduser())
    candidates.append(client_data_dir(data_dir) / TOKEN_FILE)
    for path in candidates:
        try:
            text = _token_text(path)
        except (OSError, TokenFileError):  # the daemon refuses such a file at start
            continue
        if text:
            return text
    return None


def bearer_matches(header: str | None, token: str) -> bool:
    """Constant-time check of `Authorization: Bearer <token>`, or of HTTP Basic with the
    token as the password (any user name): clients that cannot set headers, such as
    MLRun's HTTP monitoring stream, send it from the URL (`http://mm:<token>@host/...`)."""
    if not header:
        return False
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return False
        value = decoded.partition(":")[2]
    elif scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(value.strip().encode(), token.encode())
