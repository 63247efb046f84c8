"""The token check: bearer, or HTTP Basic with the token as password (what a URL with
credentials, `http://mm:<token>@host/`, makes requests-based clients send)."""

import base64

import pytest

from modelmon_daemon.core.auth import bearer_matches

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
