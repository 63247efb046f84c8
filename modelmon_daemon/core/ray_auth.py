"""Ray's token authentication when joining a cluster by address. Ray turns token mode on
by itself only for a cluster it starts (or finds with `address="auto"`): a process that
joins `host:port` without RAY_AUTH_MODE=token is refused by a cluster `ray start --head`
made with a token, after ~20 s of retries and a message that does not say why."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

AUTH_MODE_ENV = "RAY_AUTH_MODE"


def ray_token_available(env: Mapping[str, str], home: Path) -> bool:
    """A token where Ray looks for one: RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH
    names, or ~/.ray/auth_token."""
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return True
    named = env.get("RAY_AUTH_TOKEN_PATH", "")
    if named:
        return Path(named).expanduser().is_file()
    return (home / ".ray" / "auth_token").is_file()


def join_auth_mode(env: Mapping[str, str], home: Path) -> str | None:
    """The RAY_AUTH_MODE to set before joining a cluster by address, or None to leave it:
    token mode when the variable is unset and a token is available, as `ray start --head`
    decides for the head (a cluster without token auth accepts such a client too). A set
    variable is always respected."""
    if AUTH_MODE_ENV in env or not ray_token_available(env, home):
        return None
    return "token"


def use_auth_mode(mode: str) -> None:
    """Set RAY_AUTH_MODE for this process and the ones it starts: Ray reads the mode into
    its cached config, so refresh that config after setting the variable."""
    os.environ[AUTH_MODE_ENV] = mode
    try:
        from ray._raylet import Config  # type: ignore[attr-defined]

        Config.initialize("")
    except (ImportError, AttributeError):  # other Ray versions read the variable at init
        pass


def join_with_token_if_available() -> bool:
    """Apply `join_auth_mode` to this process. True when token mode is on."""
    mode = join_auth_mode(os.environ, Path.home())
    if mode is not None:
        use_auth_mode(mode)
    return os.environ.get(AUTH_MODE_ENV, "").lower() == "token"
