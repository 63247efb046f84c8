"""The token check: bearer, or HTTP Basic with the token as password (what a URL with
credentials, `http://mm:<token>@host/`, makes requests-based clients send)."""

import base64

import pytest

from modelmon_daemon.cli.main import _token_values_joined, build_parser
from modelmon_daemon.core.auth import (
    TokenFileError,
    bearer_matches,
    find_token,
    load_or_create_token,
    new_token,
)

TOKEN = "s3cret-token"


def basic(user_password: str) -> str:
    return "Basic " + base64.b64encode(user_password.encode()).decode()


@pytest.mark.parametrize(
    "header",
    [f"Bearer {TOKEN}", f"bearer  {TOKEN} ", basic(f"mm:{TOKEN}"), basic(f":{TOKEN}")],
)
def test_the_token_is_accepted(header):
    assert bearer_matches(header, TOKEN)


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Bearer wrong",
        f"Token {TOKEN}",
        basic(f"{TOKEN}:wrong"),
        basic(TOKEN),  # no password part
        "Basic !!not-base64!!",
        "Basic " + base64.b64encode(b"\xff\xfe:x").decode(),
    ],
)
def test_anything_else_is_refused(header):
    assert not bearer_matches(header, TOKEN)


@pytest.fixture(autouse=True)
def _no_token_from_the_environment(monkeypatch):
    monkeypatch.delenv("MODELMON_TOKEN", raising=False)
    monkeypatch.delenv("MODELMON_DAEMON_AUTH_TOKEN_FILE", raising=False)


def test_a_token_file_is_made_once_then_read(tmp_path):
    path = tmp_path / "auth_token"
    token = load_or_create_token(path)
    assert len(token) >= 32 and path.stat().st_mode & 0o777 == 0o600
    assert load_or_create_token(path) == token
    assert find_token(None, tmp_path) == token
    path.write_text("\n")  # empty: a new one is made
    assert load_or_create_token(path) not in ("", token)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"\xff\xfebad", "not ASCII text"),
        ("s\u00e9cret".encode(), "not ASCII text"),
        (b"two\nlines", "line breaks or control characters"),
        (b"nul\x00inside", "line breaks or control characters"),
    ],
)
def test_a_token_file_holding_no_token_is_named_and_kept(tmp_path, content, reason):
    """The daemon refuses to start on it (one line naming the file) and never replaces
    the file its clients read; a client skips it (and gets 401, not a traceback)."""
    path = tmp_path / "auth_token"
    path.write_bytes(content)
    with pytest.raises(TokenFileError) as raised:
        load_or_create_token(path)
    assert str(raised.value) == f"{path}: not a bearer token ({reason})"
    assert path.read_bytes() == content
    assert find_token(None, tmp_path) is None


def test_a_token_path_that_is_a_folder_is_named(tmp_path):
    (tmp_path / "auth_token").mkdir()
    with pytest.raises(TokenFileError, match="auth_token: Is a directory"):
        load_or_create_token(tmp_path / "auth_token")
    assert find_token(None, tmp_path) is None


def test_a_new_token_never_begins_with_a_dash():
    """One URL-safe token in 64 would; after `--token` on a command line it reads as an
    option."""
    tokens = [new_token() for _ in range(3000)]
    assert all(len(t) == 43 and not t.startswith("-") for t in tokens)
    assert len(set(tokens)) == len(tokens)


@pytest.mark.parametrize("command", [["status"], ["report", "ep", "--out", "r.html"]])
def test_a_token_beginning_with_a_dash_is_read_as_the_token(command):
    """Token files made before tokens avoided a leading dash still work after `--token`
    (argparse alone answers "expected one argument")."""
    argv = [*command, "--token", "-Ab_c", "--url", "http://127.0.0.1:9"]
    with pytest.raises(SystemExit):
        build_parser().parse_args(argv)
    args = build_parser().parse_args(_token_values_joined(argv))
    assert args.token == "-Ab_c" and args.url == "http://127.0.0.1:9"
    assert _token_values_joined(["status", "--token"]) == ["status", "--token"]
