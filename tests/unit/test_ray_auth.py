"""Joining a Ray cluster by address: token mode when a token is available and
RAY_AUTH_MODE is unset (Ray only decides that for clusters it starts)."""

from pathlib import Path

from modelmon_daemon.core.ray_auth import join_auth_mode, ray_token_available


def test_a_token_file_in_home_turns_token_mode_on(tmp_path: Path) -> None:
    assert join_auth_mode({}, tmp_path) is None
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc\n")
    assert join_auth_mode({}, tmp_path) == "token"


def test_a_set_mode_is_respected(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc\n")
    assert join_auth_mode({"RAY_AUTH_MODE": "disabled"}, tmp_path) is None
    assert join_auth_mode({"RAY_AUTH_MODE": "token"}, tmp_path) is None


def test_token_from_the_environment_or_a_named_file(tmp_path: Path) -> None:
    assert ray_token_available({"RAY_AUTH_TOKEN": "abc"}, tmp_path)
    assert not ray_token_available({"RAY_AUTH_TOKEN": "  "}, tmp_path)
    named = tmp_path / "token"
    assert not ray_token_available({"RAY_AUTH_TOKEN_PATH": str(named)}, tmp_path)
    named.write_text("abc")
    assert join_auth_mode({"RAY_AUTH_TOKEN_PATH": str(named)}, tmp_path) == "token"
    # the file RAY_AUTH_TOKEN_PATH names takes the place of ~/.ray/auth_token
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("abc")
    assert join_auth_mode({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "gone")}, tmp_path) is None
