import pytest

from modelmon_daemon.config import (
    DEFAULT_CONFIG_PATH,
    ConfigError,
    Settings,
    all_keys,
    anchor_paths,
    env_name,
    load_settings,
)
from modelmon_daemon.core.durations import format_duration, parse_duration, parse_size


def test_durations_and_sizes():
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("30s") == 30
    assert parse_duration(2.5) == 2.5
    assert format_duration(600) == "10m"
    assert parse_size("16MiB") == 16 * 1024**2
    with pytest.raises(ValueError):
        parse_duration("10 minutes please")


def test_defaults_file_holds_every_key_with_its_default():
    text = DEFAULT_CONFIG_PATH.read_text()
    for key in all_keys():
        assert f"\n{key.split('.')[1]} = " in text, key
    settings = load_settings(None, env={})
    assert settings == anchor_paths(Settings())  # the file's values are the code's defaults
    assert settings.windows.base_period == 600 and settings.windows.allowed_lateness == 60
    assert settings.daemon.port == 8470 and settings.daemon.host == "127.0.0.1"


def test_path_settings_are_made_absolute_where_they_are_loaded(tmp_path, monkeypatch):
    """Actors resolve paths in their own working directory (on a joined cluster, where
    `ray start` ran): what `start` loaded must already be absolute."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(
        None,
        env={"MODELMON_DAEMON_DATA_DIR": "./data"},
        overrides={
            "daemon.reference_dirs": ["refs"],
            "daemon.auth_token_file": "secret/token",
            "notifications.templates": "t.toml",
            "applications.python_path": ["apps", "../lib"],
        },
    )
    assert s.daemon.data_dir == str(tmp_path / "data")
    assert s.daemon.reference_dirs == [str(tmp_path / "refs")]
    assert s.daemon.auth_token_file == str(tmp_path / "secret" / "token")
    assert s.notifications.templates == str(tmp_path / "t.toml")
    assert s.applications.python_path == [str(tmp_path / "apps"), str(tmp_path.parent / "lib")]
    monkeypatch.chdir(tmp_path.parent)  # an actor elsewhere reads the same folders
    again = Settings.from_dict(s.to_dict())
    assert again.data_path == tmp_path / "data" and again.token_path == tmp_path / "secret/token"
    assert load_settings(None, env={}).notifications.templates == ""  # unset stays unset


def test_the_parquet_tree_is_the_data_dir_a_folder_or_a_uri(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    s = load_settings(None, env={}, overrides={"daemon.data_dir": "data"})
    assert s.parquet_root == str(tmp_path / "data")
    s = load_settings(None, env={"MODELMON_STORAGE_PARQUET_URI": "tree"})
    assert s.parquet_root == str(tmp_path / "tree")  # anchored as every path is
    uri = "s3://bucket/mm?region=eu-west-1&endpoint_override=127.0.0.1:9000"
    s = load_settings(None, env={}, overrides={"storage.parquet_uri": uri})
    assert s.parquet_root == uri  # a URI is left as it is
    assert Settings.from_dict(s.to_dict()).parquet_root == uri


def test_credentials_in_the_parquet_uri_are_never_shown():
    from modelmon_daemon.config import describe
    from modelmon_daemon.core.uris import redacted_uri

    uri = "s3://AKIA:shh@bucket/mm?access_key=AKIA&secret_key=shh&session_token=t&region=x"
    shown = redacted_uri(uri)
    assert "shh" not in shown and "AKIA" not in shown and "session_token=***" in shown
    assert shown.startswith("s3://***@bucket/mm?") and "region=x" in shown
    assert redacted_uri("/data/tree") == "/data/tree"
    s = load_settings(None, env={}, overrides={"storage.parquet_uri": uri})
    assert "shh" not in str(describe(s)) and s.storage.parquet_uri == uri


def test_precedence_file_env_cli(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('[windows]\nbase_period = "5m"\n[daemon]\nport = 9000\n')
    s = load_settings(cfg, env={"MODELMON_DAEMON_PORT": "9100"}, overrides={"daemon.port": 9200})
    assert s.windows.base_period == 300 and s.daemon.port == 9200
    s = load_settings(cfg, env={"MODELMON_DAEMON_PORT": "9100"})
    assert s.daemon.port == 9100
    assert env_name("windows.base_period") == "MODELMON_WINDOWS_BASE_PERIOD"


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        ({"drift.potential_threshold": 0.8}, "drift.detected_threshold"),
        ({"drift.detected_threshold": 1.0}, "drift.detected_threshold"),
        ({"drift.potential_threshold": 0}, "drift.potential_threshold"),
        ({"windows.base_period": "soon"}, "windows.base_period"),
        ({"daemon.port": "eighty"}, "daemon.port"),
        ({"stream.max_actors": -1}, "stream.max_actors"),
        ({"stream.max_buffered_rows": -1}, "stream.max_buffered_rows"),
        ({"applications.builtin": ["nope"]}, "applications.builtin"),
        ({"daemon.data_dir": "s3://bucket/data"}, "daemon.data_dir"),
        ({"storage.parquet_uri": "ftp://host/data"}, "storage.parquet_uri"),
    ],
)
def test_bad_values_name_the_key(overrides, key):
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={}, overrides=overrides)
    assert err.value.key == key
    assert key in str(err.value)


def test_bad_environment_value_names_key_and_variable():
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={"MODELMON_WINDOWS_ALLOWED_LATENESS": "-3s"})
    assert err.value.key == "windows.allowed_lateness"
    assert "MODELMON_WINDOWS_ALLOWED_LATENESS" in str(err.value)


def test_unknown_key_in_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[windows]\nbase_perod = 3\n")
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.key == "windows.base_perod"


def test_packaged_defaults_are_found():
    from modelmon_daemon.core.resources import default_file

    assert default_file("modelmon.toml").exists()
    assert default_file("alert_templates.toml").exists()
    assert (default_file("grafana") / "dashboards").is_dir()


@pytest.mark.parametrize(
    ("text", "key", "line"),
    [
        (
            '[daemon]\nport = 8000\n\n[windows]\n# c\nbase_period = "ten minutes"\n',
            "windows.base_period",
            6,
        ),
        ('[windows]\nbase_period = "1s"\nallowed_lateness = "0s"\n', "windows.allowed_lateness", 3),
        ("[daemon]\nhost = 'x'\n  port = 0\n", "daemon.port", 3),
        (
            '[notifications]\nmax_attempts = 3\n[[alerts]]\nname = "a"\n[windowz]\nx = 1\n',
            "windowz.x",
            6,
        ),
        ("windows = 3\n", "windows", 1),
        ("[windows]\nbase_period = \n", "--config", 2),
    ],
)
def test_file_errors_name_the_file_and_line(tmp_path, text, key, line):
    """A bad value from the config file: the message starts with file:line, whether the
    value fails to parse, fails validation later, or the file is no valid TOML."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={})
    assert err.value.key == key
    assert str(err.value).startswith(f"{cfg}:{line}: config key {key}: ")


def test_a_value_given_later_is_not_blamed_on_the_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("[daemon]\nport = 0\n")
    assert load_settings(cfg, env={}, overrides={"daemon.port": 9000}).daemon.port == 9000
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={"MODELMON_DAEMON_PORT": "70000"})
    assert str(err.value) == (
        "config key daemon.port: (from MODELMON_DAEMON_PORT) must be 1..65535, got 70000"
    )
    with pytest.raises(ConfigError) as err:
        load_settings(cfg, env={}, overrides={"daemon.port": 0})
    assert str(err.value) == "config key daemon.port: must be 1..65535, got 0"


def test_reference_dirs_may_be_object_store_folders(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    entry = "s3://key:secret@bucket/refs?region=x"
    s = load_settings(None, env={}, overrides={"daemon.reference_dirs": ["refs", entry]})
    assert s.reference_paths == [tmp_path / "refs"] and s.reference_uris == [entry]
    s = load_settings(None, env={}, overrides={"daemon.reference_dirs": [entry]})
    assert s.reference_paths == [] and s.reference_uris == [entry]  # no local folder then
    from modelmon_daemon.config import describe

    assert describe(s)["daemon"]["reference_dirs"] == ["s3://***@bucket/refs?region=x"]
    with pytest.raises(ConfigError) as err:
        load_settings(None, env={}, overrides={"daemon.reference_dirs": ["ftp://h/refs"]})
    assert err.value.key == "daemon.reference_dirs"
