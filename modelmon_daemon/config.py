"""Settings: defaults < config file (TOML) < MODELMON_* environment < CLI flags.

Every key is `section.key`; its environment variable is MODELMON_SECTION_KEY. A bad value
stops start-up with a ConfigError naming the key.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelmon_daemon.alerts.model import parse_alert
from modelmon_daemon.applications import BUILTIN_APPLICATIONS
from modelmon_daemon.core.durations import format_duration, parse_duration, parse_size
from modelmon_daemon.core.errors import ApiError
from modelmon_daemon.core.resources import default_file
from modelmon_daemon.core.uris import is_uri, redacted_uri

DEFAULT_CONFIG_PATH = default_file("modelmon.toml")


class ConfigError(ValueError):
    """A bad setting. `where`: the file and line it came from ("c.toml:3"), when known."""

    def __init__(self, key: str, message: str, where: str = "") -> None:
        prefix = f"{where}: " if where else ""
        super().__init__(f"{prefix}config key {key}: {message}")
        self.key = key
        self.message = message
        self.where = where


@dataclass
class DaemonSettings:
    data_dir: str = "./modelmon-data"
    host: str = "127.0.0.1"
    port: int = 8470
    max_body_size: int = 64 * 1024 * 1024
    auth_token_file: str = ""
    allowed_hosts: list[str] = field(default_factory=list)
    reference_dirs: list[str] = field(default_factory=list)
    max_pending_rows: int = 0
    large_body_size: int = 1024 * 1024
    max_large_requests: int = 2
    event_loop: str = "uvloop"  # "uvloop" (when installed) or "asyncio"
    # malloc asks for transparent huge pages (glibc >= 2.35 and a kernel that gives them)
    huge_pages: bool = True
    # on a Ray cluster, an ingestion server on every other node (same event routes, same
    # token), listening on node_port (-1: the daemon's port; 0: any free port)
    node_ingestion: bool = True
    node_port: int = -1
    # rows logged and on their way to the stream actors; past it, 503 with Retry-After
    # (stream actors that are behind slow ingestion down instead of filling memory)
    max_forwarding_rows: int = 1_000_000


@dataclass
class RaySettings:
    address: str = ""
    num_cpus: int = 0
    include_dashboard: bool = True
    dashboard_port: int = 8265
    temp_dir: str = ""


@dataclass
class WindowSettings:
    base_period: float = 600.0
    allowed_lateness: float = 60.0


@dataclass
class ControllerSettings:
    tick_interval: float = 10.0
    # rows one tick analyzes at most (whole endpoints); the rest wait for the next tick,
    # so the working set of a tick is bounded whatever the backlog
    max_tick_rows: int = 2_000_000


@dataclass
class StreamSettings:
    # 0 = two per CPU of the Ray cluster at start, at least 2 and at most 16
    max_actors: int = 0
    # rows a stream actor holds in memory; past it, the oldest windows' rows stay in the
    # durability log only and are read back when their window is analyzed
    max_buffered_rows: int = 0  # 0: STREAM_ROWS_IN_MEMORY shared by the stream actors


@dataclass
class ApplicationSettings:
    pool_size: int = 0
    builtin: list[str] = field(
        default_factory=lambda: [
            "histogram-data-drift",
            "operational-health",
            "drift-metrics",
            "data-quality",
            "multivariate-drift",
            "prediction-drift",
            "performance-estimation",
        ]
    )
    user: list[str] = field(default_factory=list)
    python_path: list[str] = field(default_factory=list)


@dataclass
class DriftSettings:
    potential_threshold: float = 0.5
    detected_threshold: float = 0.7
    min_sample_size: int = 0
    calibration: str = "off"
    psi_threshold: float = 0.2
    share_potential: float = 0.25
    share_detected: float = 0.5
    z_potential: float = 3.0
    z_detected: float = 5.0


@dataclass
class StorageSettings:
    # where the Parquet tree goes: "" = the data dir; a folder, or a URI pyarrow opens
    # (s3://bucket/prefix?region=…, gs://…, hdfs://…, file:///…)
    parquet_uri: str = ""
    lmdb_map_size: int = 16 * 1024**3
    lmdb_max_map_size: int = 1024**4
    retention: float = 0.0
    compact: bool = True
    maintenance_interval: float = 3600.0
    maintenance_batch: int = 200


@dataclass
class OperationalSettings:
    latency_potential_us: float = 0.0
    latency_detected_us: float = 0.0
    error_rate_potential: float = 0.05
    error_rate_detected: float = 0.2
    no_traffic_after: float = 0.0


@dataclass
class DataQualitySettings:
    missing_potential: float = 0.05
    missing_detected: float = 0.2
    out_of_range_potential: float = 0.05
    out_of_range_detected: float = 0.2


@dataclass
class PerformanceSettings:
    label_ttl: float = 3600.0
    drop_potential: float = 0.05
    drop_detected: float = 0.1
    # a classifier whose reference scores are off by more than this (expected calibration
    # error) gets its performance estimates marked poorly_calibrated
    max_calibration_error: float = 0.1


@dataclass
class MetricsSettings:
    per_feature: bool = False


@dataclass
class NotificationSettings:
    allow_http_commands: bool = False
    max_alerts: int = 10000  # alert configs in all (MLRun's alerts.max_allowed)
    public_url: str = ""
    templates: str = ""
    max_attempts: int = 8
    backoff_initial: float = 1.0
    backoff_max: float = 300.0
    default_cooldown: float = 1800.0
    poll_interval: float = 0.5


@dataclass
class Settings:
    daemon: DaemonSettings = field(default_factory=DaemonSettings)
    ray: RaySettings = field(default_factory=RaySettings)
    windows: WindowSettings = field(default_factory=WindowSettings)
    controller: ControllerSettings = field(default_factory=ControllerSettings)
    stream: StreamSettings = field(default_factory=StreamSettings)
    applications: ApplicationSettings = field(default_factory=ApplicationSettings)
    drift: DriftSettings = field(default_factory=DriftSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    operational: OperationalSettings = field(default_factory=OperationalSettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    data_quality: DataQualitySettings = field(default_factory=DataQualitySettings)
    performance: PerformanceSettings = field(default_factory=PerformanceSettings)
    alerts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def data_path(self) -> Path:
        return Path(self.daemon.data_dir).expanduser().resolve()

    @property
    def parquet_root(self) -> str:
        """Where the Parquet tree is: storage.parquet_uri, or the data dir."""
        return self.storage.parquet_uri or str(self.data_path)

    @property
    def token_path(self) -> Path:
        from modelmon_daemon.core.auth import token_path

        return token_path(self.data_path, self.daemon.auth_token_file)

    @property
    def reference_paths(self) -> list[Path]:
        """Where reference.path may point on local disk: the configured folders, resolved
        (<data_dir>/references when none is configured)."""
        dirs = self.daemon.reference_dirs or [str(self.data_path / "references")]
        return list(_resolved_dirs(tuple(d for d in dirs if not is_uri(d))))

    @property
    def reference_uris(self) -> list[str]:
        """Where reference.path may point on an object store: the entries that are URIs."""
        return [d for d in self.daemon.reference_dirs if is_uri(d)]

    @property
    def pending_rows_limit(self) -> int:
        if self.daemon.max_pending_rows:
            return self.daemon.max_pending_rows
        return max(100_000, int(physical_memory() / 8 / 150))

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Mapping[str, Any]]) -> Settings:
        """Rebuild from to_dict() output (as actors receive it); values are already typed."""
        settings = cls()
        for section, values in data.items():
            if section == "alerts":
                settings.alerts = list(values)  # type: ignore[arg-type]
                continue
            target = getattr(settings, section)
            for key, value in values.items():
                setattr(target, key, value)
        return settings


DURATION_KEYS = {
    "windows.base_period",
    "windows.allowed_lateness",
    "controller.tick_interval",
    "operational.no_traffic_after",
    "notifications.backoff_initial",
    "notifications.backoff_max",
    "notifications.default_cooldown",
    "notifications.poll_interval",
    "performance.label_ttl",
    "storage.retention",
    "storage.maintenance_interval",
}
SIZE_KEYS = {
    "daemon.max_body_size",
    "daemon.large_body_size",
    "storage.lmdb_map_size",
    "storage.lmdb_max_map_size",
}


@functools.lru_cache(maxsize=16)
def _resolved_dirs(dirs: tuple[str, ...]) -> tuple[Path, ...]:
    """The folders resolved once: resolving them for every registration cost the event
    loop ~19% of a 10,000-endpoint registration burst (a realpath walk per folder)."""
    return tuple(Path(d).expanduser().resolve() for d in dirs)


def _coerce(key: str, current: Any, value: Any) -> Any:
    try:
        if key in DURATION_KEYS:
            return parse_duration(value)
        if key in SIZE_KEYS:
            return parse_size(value)
        if isinstance(current, bool):
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError(f"not a boolean: {value!r}")
        if isinstance(current, int):
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError(f"not an integer: {value!r}")
            return int(value)
        if isinstance(current, float):
            if isinstance(value, bool):
                raise ValueError(f"not a number: {value!r}")
            return float(value)
        if isinstance(current, list):
            if isinstance(value, str):
                return [v.strip() for v in value.split(",") if v.strip()]
            if not isinstance(value, list):
                raise ValueError(f"not a list: {value!r}")
            return [str(v) for v in value]
        if not isinstance(value, str):
            raise ValueError(f"not a string: {value!r}")
        return value
    except (TypeError, ValueError) as exc:
        raise ConfigError(key, str(exc)) from None


def _set(settings: Settings, key: str, value: Any) -> None:
    section_name, _, name = key.partition(".")
    section = getattr(settings, section_name, None)
    if section is None or not dataclasses.is_dataclass(section) or not name:
        raise ConfigError(key, "unknown key")
    if name not in {f.name for f in dataclasses.fields(section)}:
        raise ConfigError(key, "unknown key")
    setattr(section, name, _coerce(key, getattr(section, name), value))


def all_keys() -> list[str]:
    settings = Settings()
    return [
        f"{s.name}.{f.name}"
        for s in dataclasses.fields(settings)
        if dataclasses.is_dataclass(getattr(settings, s.name))
        for f in dataclasses.fields(getattr(settings, s.name))
    ]


def env_name(key: str) -> str:
    return "MODELMON_" + key.replace(".", "_").upper()


def validate(settings: Settings) -> Settings:
    d, w, c = settings.daemon, settings.windows, settings.controller
    if not 0 < d.port < 65536:
        raise ConfigError("daemon.port", f"must be 1..65535, got {d.port}")
    if not -1 <= d.node_port < 65536:
        raise ConfigError(
            "daemon.node_port", f"must be -1 (the daemon's), 0 (any) or a port, got {d.node_port}"
        )
    if is_uri(d.data_dir):
        raise ConfigError(
            "daemon.data_dir",
            f"must be a local folder (LMDB and the token live there), got {d.data_dir!r}; "
            "put the Parquet tree elsewhere with storage.parquet_uri (--parquet-uri)",
        )
    uris = [("storage.parquet_uri", settings.storage.parquet_uri)]
    uris += [("daemon.reference_dirs", entry) for entry in d.reference_dirs]
    for key, uri in uris:
        scheme = uri.split("://", 1)[0].lower() if is_uri(uri) else ""
        if scheme and scheme not in PARQUET_SCHEMES:
            raise ConfigError(
                key, f"unknown scheme {scheme!r} (known: {', '.join(PARQUET_SCHEMES)})"
            )
    if d.max_body_size < 1024:
        raise ConfigError("daemon.max_body_size", "must be at least 1KiB")
    if w.base_period < 1:
        raise ConfigError("windows.base_period", f"must be at least 1s, got {w.base_period}s")
    if w.allowed_lateness <= 0:
        raise ConfigError("windows.allowed_lateness", "must be positive")
    if c.tick_interval <= 0:
        raise ConfigError("controller.tick_interval", "must be positive")
    if c.max_tick_rows < 1:
        raise ConfigError("controller.max_tick_rows", "must be at least 1")
    if settings.stream.max_actors < 0:
        raise ConfigError("stream.max_actors", "must be 0 (two per CPU) or more")
    if settings.notifications.max_alerts < 1:
        raise ConfigError("notifications.max_alerts", "must be at least 1")
    if settings.daemon.event_loop not in ("uvloop", "asyncio"):
        raise ConfigError("daemon.event_loop", "uvloop or asyncio")
    if settings.stream.max_buffered_rows < 0:
        raise ConfigError("stream.max_buffered_rows", "must be 0 (automatic) or more")
    if settings.applications.pool_size < 0:
        raise ConfigError("applications.pool_size", "must be 0 (one per CPU) or more")
    if settings.ray.num_cpus < 0:
        raise ConfigError("ray.num_cpus", "must be 0 (all) or more")
    for name in settings.applications.builtin:
        if name not in BUILTIN_APPLICATIONS:
            raise ConfigError(
                "applications.builtin",
                f"unknown application {name!r} (known: {', '.join(sorted(BUILTIN_APPLICATIONS))})",
            )
    for path in settings.applications.user:
        if ":" not in path and "." not in path:
            raise ConfigError("applications.user", f"{path!r} is not an import path module:Class")
    p, q = settings.drift.potential_threshold, settings.drift.detected_threshold
    if not 0 < p < 1:
        raise ConfigError("drift.potential_threshold", f"must be in (0, 1), got {p}")
    if not 0 < q < 1:
        raise ConfigError("drift.detected_threshold", f"must be in (0, 1), got {q}")
    if not p < q:
        raise ConfigError(
            "drift.detected_threshold",
            f"must be greater than drift.potential_threshold ({p}), got {q}",
        )
    dr = settings.drift
    if dr.min_sample_size < 0:
        raise ConfigError("drift.min_sample_size", "must not be negative")
    if not 0 < dr.z_potential < dr.z_detected:
        raise ConfigError("drift.z_detected", "need 0 < z_potential < z_detected")
    if dr.calibration not in ("off", "bootstrap"):
        raise ConfigError("drift.calibration", "off or bootstrap")
    if dr.psi_threshold <= 0:
        raise ConfigError("drift.psi_threshold", "must be positive")
    if not 0 < dr.share_potential < dr.share_detected <= 1:
        raise ConfigError(
            "drift.share_detected",
            f"need 0 < share_potential ({dr.share_potential}) < share_detected "
            f"({dr.share_detected}) <= 1",
        )
    if settings.storage.lmdb_map_size < 16 * 1024**2:
        raise ConfigError("storage.lmdb_map_size", "must be at least 16MiB")
    if settings.storage.lmdb_max_map_size < settings.storage.lmdb_map_size:
        raise ConfigError("storage.lmdb_max_map_size", "must be at least storage.lmdb_map_size")
    if settings.storage.maintenance_interval <= 0:
        raise ConfigError("storage.maintenance_interval", "must be positive")
    if settings.storage.maintenance_batch < 1:
        raise ConfigError("storage.maintenance_batch", "must be at least 1")
    if d.max_pending_rows < 0:
        raise ConfigError("daemon.max_pending_rows", "must be 0 (from memory) or more")
    if d.max_forwarding_rows < 1000:
        raise ConfigError("daemon.max_forwarding_rows", "must be at least 1000")
    if d.max_large_requests < 1:
        raise ConfigError("daemon.max_large_requests", "must be at least 1")
    op = settings.operational
    pairs = (
        ("operational", op, "latency_potential_us", "latency_detected_us"),
        ("operational", op, "error_rate_potential", "error_rate_detected"),
        ("data_quality", settings.data_quality, "missing_potential", "missing_detected"),
        ("data_quality", settings.data_quality, "out_of_range_potential", "out_of_range_detected"),
    )
    for section, values, low, high in pairs:
        lo, hi = getattr(values, low), getattr(values, high)
        if lo < 0 or hi < 0:
            raise ConfigError(f"{section}.{low}", "must not be negative (0 = off)")
        if lo and hi and not lo < hi:
            raise ConfigError(f"{section}.{high}", f"must be greater than {section}.{low}")
    perf = settings.performance
    if not 0 < perf.drop_potential < perf.drop_detected:
        raise ConfigError("performance.drop_detected", "need 0 < drop_potential < drop_detected")
    if not 0 < perf.max_calibration_error <= 1:
        raise ConfigError("performance.max_calibration_error", "must be in (0, 1]")
    if perf.label_ttl <= 0:
        raise ConfigError("performance.label_ttl", "must be positive")
    n = settings.notifications
    if n.max_attempts < 1:
        raise ConfigError("notifications.max_attempts", "must be at least 1")
    if n.poll_interval <= 0:
        raise ConfigError("notifications.poll_interval", "must be positive")
    names = set()
    for i, alert in enumerate(settings.alerts):
        try:
            parsed = parse_alert(alert, default_cooldown=n.default_cooldown, from_config=True)
        except ApiError as exc:
            raise ConfigError(f"alerts[{i}]", exc.message) from None
        if parsed.name in names:
            raise ConfigError(f"alerts[{i}].name", f"{parsed.name!r} is defined twice")
        names.add(parsed.name)
    return settings


@functools.cache
def physical_memory() -> int:
    """Bytes of RAM (read once: it is asked on every ingestion request)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 8 * 1024**3


def application_settings(settings: Settings) -> dict[str, Any]:
    """The flat settings dict applications read from their context."""
    return {
        **dataclasses.asdict(settings.drift),
        **dataclasses.asdict(settings.operational),
        **dataclasses.asdict(settings.data_quality),
        **dataclasses.asdict(settings.performance),
    }


# rows all stream actors together hold in memory by default (~150 B a row at 20 features:
# ~2.3 GiB); each gets its share, at least MIN_ROWS_PER_STREAM_ACTOR
STREAM_ROWS_IN_MEMORY = 16_000_000
MIN_ROWS_PER_STREAM_ACTOR = 1_000_000


def stream_row_budget(settings: Settings, actors: int) -> int:
    """stream.max_buffered_rows, or when 0, STREAM_ROWS_IN_MEMORY divided among the
    `actors` stream actors: the daemon's bound stays the same whether it runs few large
    actors or many small ones (with a per-actor default, four actors held a quarter of
    what sixteen did, and a 10,000-endpoint tick read most rows back from the log).
    `actors` 0 (not known yet): the smallest share."""
    if settings.stream.max_buffered_rows:
        return settings.stream.max_buffered_rows
    if actors < 1:
        return MIN_ROWS_PER_STREAM_ACTOR
    return max(MIN_ROWS_PER_STREAM_ACTOR, STREAM_ROWS_IN_MEMORY // actors)


def load_settings(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Defaults, then the TOML file (the default one if `path` is None and it exists),
    then MODELMON_* variables, then `overrides` ("section.key" -> value). An error names
    where the bad value came from: the file and line, or the environment variable."""
    settings = Settings()
    origins: dict[str, str] = {}  # key -> where its value came from, for errors
    file = Path(path) if path else DEFAULT_CONFIG_PATH
    if path or file.exists():
        _load_file(settings, file, origins)
    env = os.environ if env is None else env
    for key in all_keys():
        name = env_name(key)
        if name in env:
            origins[key] = f"(from {name})"
            _set_from(settings, key, env[name], origins)
    for key, value in (overrides or {}).items():
        if value is not None:
            origins.pop(key, None)
            _set(settings, key, value)
    try:
        return anchor_paths(validate(settings))
    except ConfigError as exc:
        raise _located(exc, origins) from None


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve()) if path else path


# the file systems pyarrow opens by URI
PARQUET_SCHEMES = ("file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss")


def anchor_paths(settings: Settings) -> Settings:
    """Every path setting made absolute, against the folder the settings were loaded in.
    Actors resolve paths in their own working directory: on a cluster joined with
    --ray-address that is wherever `ray start` ran, so a relative data dir would be one
    folder for the HTTP process and another for the log owner."""
    d = settings.daemon
    d.data_dir = _absolute(d.data_dir)
    storage = settings.storage
    if not is_uri(storage.parquet_uri):
        storage.parquet_uri = _absolute(storage.parquet_uri)
    d.auth_token_file = _absolute(d.auth_token_file)
    d.reference_dirs = [p if is_uri(p) else _absolute(p) for p in d.reference_dirs]
    settings.notifications.templates = _absolute(settings.notifications.templates)
    settings.applications.python_path = [_absolute(p) for p in settings.applications.python_path]
    return settings


def _load_file(settings: Settings, file: Path, origins: dict[str, str]) -> None:
    if not file.exists():
        raise ConfigError("--config", f"file not found: {file}")
    try:
        text = file.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError("--config", f"{file}: cannot be read: {exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"at line (\d+)", str(exc))
        where = f"{file}:{line.group(1)}" if line else str(file)
        raise ConfigError("--config", str(exc), where) from None
    lines = key_lines(text)
    for section, values in data.items():
        where = f"{file}:{lines[section]}" if section in lines else str(file)
        if section == "alerts":
            if not isinstance(values, list):
                raise ConfigError("alerts", "expected [[alerts]] tables", where)
            settings.alerts = [dict(v) for v in values]
            continue
        if not isinstance(values, dict):
            raise ConfigError(section, f"expected a [{section}] table", where)
        for name, value in values.items():
            key = f"{section}.{name}"
            origins[key] = f"{file}:{lines[key]}" if key in lines else str(file)
            _set_from(settings, key, value, origins)


def _set_from(settings: Settings, key: str, value: Any, origins: dict[str, str]) -> None:
    try:
        _set(settings, key, value)
    except ConfigError as exc:
        raise _located(exc, origins) from None


def _located(exc: ConfigError, origins: dict[str, str]) -> ConfigError:
    """The error again, saying where its key's value came from (a file and line, or an
    environment variable); as it was for values given on the command line."""
    origin = origins.get(exc.key)
    if origin is None or exc.where:
        return exc
    if origin.startswith("(from "):
        return ConfigError(exc.key, f"{origin} {exc.message}")
    return ConfigError(exc.key, exc.message, origin)


_TABLE = re.compile(r"^\s*\[\[?\s*([A-Za-z0-9_.-]+)\s*\]")
_KEY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*=")


def key_lines(text: str) -> dict[str, int]:
    """The line (1-based) of each `section.key = ...` and `[section]` of a TOML text, for
    error messages (tomllib keeps no positions). Approximate on purpose: a line inside a
    multi-line string that looks like `key = ...` may be taken for the key (the first
    one in a section wins); a key not found is reported by file only."""
    lines: dict[str, int] = {}
    section = ""
    for number, line in enumerate(text.splitlines(), start=1):
        table = _TABLE.match(line)
        if table:
            section = table.group(1)
            lines.setdefault(section, number)
            continue
        key = _KEY.match(line)
        if key:
            lines.setdefault(f"{section}.{key.group(1)}" if section else key.group(1), number)
    return lines


def describe(settings: Settings) -> dict[str, Any]:
    """Settings as a person reads them (durations spelled out)."""
    out = settings.to_dict()
    out.pop("alerts", None)  # may hold secrets; GET /v1/alerts shows them redacted
    out["storage"]["parquet_uri"] = redacted_uri(out["storage"]["parquet_uri"])
    out["daemon"]["reference_dirs"] = [redacted_uri(d) for d in out["daemon"]["reference_dirs"]]
    for key in DURATION_KEYS:
        section, name = key.split(".")
        out[section][name] = format_duration(out[section][name])
    return out
