"""`modelmon-daemon`: start/stop/status the daemon, query it, run the demo."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from modelmon_daemon.cli.progress import terminal_progress
from modelmon_daemon.client import (
    Client,
    ClientError,
    DaemonUnreachable,
    InvalidDaemonUrl,
    daemon_url,
)
from modelmon_daemon.config import ConfigError, Settings, load_settings
from modelmon_daemon.core.daemon_file import (
    connect_url,
    http_url,
    live_pid,
    pid_alive,
    read_daemon_file,
)
from modelmon_daemon.core.huge_pages import restart_with_huge_pages
from modelmon_daemon.server.daemon import StartupError, check_can_start

FLAG_KEYS = {
    "data_dir": "daemon.data_dir",
    "host": "daemon.host",
    "port": "daemon.port",
    "base_period": "windows.base_period",
    "allowed_lateness": "windows.allowed_lateness",
    "ray_address": "ray.address",
    "tick_interval": "controller.tick_interval",
    "parquet_uri": "storage.parquet_uri",
}


def _settings(args: argparse.Namespace) -> Settings:
    overrides: dict[str, Any] = {key: getattr(args, flag, None) for flag, key in FLAG_KEYS.items()}
    for item in getattr(args, "set", None) or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(key, "--set needs section.key=value")
        overrides[key] = value
    return load_settings(args.config, overrides=overrides)


def _add_daemon_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML config file (default: config/modelmon.toml)")
    p.add_argument("--data-dir", help="where Parquet and LMDB live (default ./modelmon-data)")
    p.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    p.add_argument("--port", type=int, help="HTTP port (default 8470)")
    p.add_argument("--base-period", help="window length, e.g. 10m or 30s")
    p.add_argument("--allowed-lateness", help="watermark lag and idle timeout, e.g. 60s")
    p.add_argument("--tick-interval", help="how often the controller looks for closed windows")
    p.add_argument("--ray-address", help="join this Ray cluster instead of starting one")
    p.add_argument(
        "--parquet-uri",
        help="put the Parquet tree here instead of the data dir: a folder or a URI "
        "(s3://bucket/prefix?region=...)",
    )
    p.add_argument(
        "--set",
        action="append",
        metavar="SECTION.KEY=VALUE",
        help="any other config key (repeatable)",
    )


def cmd_start(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if args.detach:
        return _start_detached(args, settings)
    if settings.daemon.huge_pages:
        restart_with_huge_pages()
    from modelmon_daemon.server.daemon import run

    try:
        run(settings)
    except StartupError as exc:
        print(f"modelmon-daemon: {exc}", file=sys.stderr)
        return 1
    return 0


def _start_detached(args: argparse.Namespace, settings: Settings) -> int:
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    try:  # the child would fail the same way, with the reason only in its log
        check_can_start(settings)
    except StartupError as exc:
        print(f"modelmon-daemon: {exc}", file=sys.stderr)
        return 1
    argv = [sys.executable, "-m", "modelmon_daemon", "start"]
    for flag in FLAG_KEYS:
        value = getattr(args, flag, None)
        if value is not None:
            argv += [f"--{flag.replace('_', '-')}", str(value)]
    if args.config:
        argv += ["--config", args.config]
    for item in args.set or []:
        argv += ["--set", item]
    log_path = data / "daemon.log"
    with open(log_path, "ab") as log_file:
        log_start = log_file.tell()  # the child's own lines follow
        proc = subprocess.Popen(
            argv,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = http_url(settings.daemon.host, settings.daemon.port)
    probe_url = connect_url(settings.daemon.host, settings.daemon.port)  # 0.0.0.0: loopback
    deadline = time.time() + args.wait
    while time.time() < deadline:
        if proc.poll() is not None:
            reason = _last_error_line(log_path, log_start)
            if reason:
                print(reason, file=sys.stderr)
            print(
                f"modelmon-daemon: start failed (exit {proc.returncode}); see {log_path}",
                file=sys.stderr,
            )
            return 1
        try:
            with Client(probe_url, timeout=2, retries=0) as probe:
                probe.health()
            # healthy, and ours: the daemon at that URL wrote this data dir's daemon
            # file with our child's pid (not another daemon holding the address)
            if (read_daemon_file(data) or {}).get("pid") == proc.pid:
                print(f"modelmon-daemon started (pid {proc.pid}) on {url}; log: {log_path}")
                return 0
        except (ClientError, OSError):
            pass
        time.sleep(0.5)
    print(f"modelmon-daemon: not healthy after {args.wait}s; see {log_path}", file=sys.stderr)
    return 1


def _last_error_line(log_path: Path, offset: int) -> str | None:
    """The one-line error a failed child wrote (`modelmon-daemon: ...`) to its log after
    `offset`, so a detached start says why it failed as a foreground one does."""
    try:
        with open(log_path, "rb") as log_file:
            log_file.seek(offset)
            text = log_file.read(1 << 20).decode("utf-8", "replace")
    except OSError:
        return None
    errors = [line for line in text.splitlines() if line.startswith("modelmon-daemon: ")]
    return errors[-1] if errors else None


def _data_dir(args: argparse.Namespace) -> Path:
    if args.data_dir:
        return Path(args.data_dir).expanduser()
    return _settings(args).data_path


def cmd_stop(args: argparse.Namespace) -> int:
    data = _data_dir(args)
    pid = live_pid(read_daemon_file(data))
    if pid is None:
        print(f"no daemon running on {data}")
        return 1
    os.kill(pid, signal.SIGTERM)
    deadline = time.time() + args.timeout
    while time.time() < deadline and pid_alive(pid):
        time.sleep(0.2)
    if pid_alive(pid):
        print(f"daemon pid {pid} did not stop within {args.timeout}s", file=sys.stderr)
        return 1
    print(f"stopped daemon pid {pid}")
    return 0


def _client(args: argparse.Namespace) -> Client:
    """The daemon at --url / $MODELMON_URL / the one running on the data dir, with the
    token from --token, $MODELMON_TOKEN or the data dir's auth_token file."""
    return Client(args.url, token=args.token, data_dir=args.data_dir)


def _add_client_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--url",
        help="daemon URL (default $MODELMON_URL, else the daemon running on the data dir, "
        "else http://127.0.0.1:8470)",
    )
    p.add_argument(
        "--token", help="bearer token (default $MODELMON_TOKEN or the data dir's auth_token)"
    )
    p.add_argument(
        "--data-dir",
        help="where to find the running daemon and auth_token "
        "(default $MODELMON_DAEMON_DATA_DIR or ./modelmon-data)",
    )


def cmd_status(args: argparse.Namespace) -> int:
    client = _client(args)
    try:
        health = client.health()
        status = client.status()
    except ClientError as exc:
        if not args.json:
            raise  # one line on stderr, as every command
        print(json.dumps(exc.body, indent=2))
        return 1
    except DaemonUnreachable as exc:
        print(f"no daemon at {client.url}: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"health": health, "status": status}, indent=2))
        return 0
    ctl = status["controller"]
    print(f"daemon      {client.url}  {health['status']}")
    print(f"data dir    {status['data_dir']}")
    if status.get("parquet", status["data_dir"]) != status["data_dir"]:
        print(f"parquet     {status['parquet']}")
    print(
        f"windows     base_period {status['base_period_s']:g}s, "
        f"allowed_lateness {status['allowed_lateness_s']:g}s"
    )
    print(f"endpoints   {status['endpoints']}   logged records waiting: {status['wal_records']}")
    streams = len(ctl.get("stream_actors", []))
    print(f"actors      {', '.join(sorted(health['actors']))} + {streams} stream")
    print(f"ticks       {ctl.get('ticks')}  (errors {ctl.get('tick_errors')})")
    logged = status.get("log") or {}
    if logged.get("commits"):
        requests, commits = logged["requests"], logged["commits"]
        print(
            f"log         {_count(requests, 'request')} durable in {_count(commits, 'commit')} "
            f"({logged['requests_per_commit']:.1f} a commit, {logged['mean_commit_ms']:.2f} ms "
            "each)"
        )
    for server in status.get("ingestion_servers") or []:
        print(f"ingestion   node {server['node'][:12]}  {server['url']}")
    for failed in status.get("ingestion_server_errors") or []:
        print(f"ingestion   node {failed['node'][:12]}  not serving: {failed['error']}")
    return 0


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def _table(rows: list[list[Any]], header: list[str]) -> str:
    cells = [header] + [["-" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def cmd_endpoints(args: argparse.Namespace) -> int:
    client = _client(args)
    uid = [u for u in args.uid if u != "show"]
    if len(uid) > 1:
        raise CliError("endpoints show takes one UID")
    if uid:
        record = client.endpoint(uid[0])
        print(json.dumps(record, indent=2))
        return 0
    records = client.endpoints()
    if args.json:
        print(json.dumps(records, indent=2))
        return 0
    rows = [
        [
            r["uid"],
            r["project"],
            r["name"],
            r["drift_status"],
            (r["drift_measures"] or {}).get("general_drift"),
            r["events_total"],
            r["last_request"],
        ]
        for r in records
    ]
    print(
        _table(rows, ["UID", "PROJECT", "NAME", "DRIFT", "GENERAL_DRIFT", "EVENTS", "LAST_REQUEST"])
    )
    return 0


def cmd_results(args: argparse.Namespace) -> int:
    client = _client(args)
    start = None
    if args.since:
        from modelmon_daemon.core.durations import parse_duration

        try:
            start = time.time() - parse_duration(args.since)
        except ValueError as exc:
            raise CliError(f"--since: {exc}") from None
    rows = client.results(args.uid, start=start, application=args.application, name=args.name)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    table = [
        [
            r["start"],
            r["end"],
            r["application"],
            r["name"],
            r["type"],
            None if r["value"] is None else f"{r['value']:.6f}",
            r["status"],
        ]
        for r in rows
    ]
    print(_table(table, ["START", "END", "APPLICATION", "NAME", "TYPE", "VALUE", "STATUS"]))
    return 0


def read_config_file(path: str) -> Any:
    """A JSON or TOML file; a syntax error names the file and line."""
    import tomllib

    file = Path(path)
    try:
        text = file.read_text()
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}") from None
    if file.suffix.lower() == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise CliError(f"{path}: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{path}:{exc.lineno}: {exc.msg} (column {exc.colno})") from None


class CliError(RuntimeError):
    pass


def cmd_alerts(args: argparse.Namespace) -> int:
    client = _client(args)
    action = args.action
    if action == "create":
        if not args.file:
            raise CliError("alerts create needs --file alert.json|alert.toml")
        data = read_config_file(args.file)
        configs = data.get("alerts", [data]) if isinstance(data, dict) else data
        for config in configs:
            record = client.create_alert(config)
            print(f"alert {record['name']} saved")
        return 0
    if action in ("show", "reset", "events", "delete") and not args.name:
        raise CliError(f"alerts {action} needs an alert NAME")
    if action == "show":
        print(json.dumps(client.alert(args.name), indent=2))
    elif action == "reset":
        done = client.reset_alert(args.name, args.entity)
        print(f"alert {args.name}: {done['reset']} active entities reset")
    elif action == "delete":
        client.delete_alert(args.name)
        print(f"alert {args.name} deleted")
    elif action == "events":
        events = client.alert_events(args.name)
        if args.json:
            print(json.dumps(events, indent=2))
            return 0
        rows = [
            [
                e.get("time"),
                e.get("action"),
                e.get("entity"),
                e.get("kind") or e.get("channel"),
                e.get("error") or e.get("value"),
            ]
            for e in events
        ]
        print(_table(rows, ["TIME", "ACTION", "ENTITY", "KIND/CHANNEL", "DETAIL"]))
    else:
        alerts = client.alerts()
        if args.json:
            print(json.dumps(alerts, indent=2))
            return 0
        rows = [
            [
                a["name"],
                a["severity"],
                ",".join(a["trigger"]["events"]),
                ",".join(a["entities"]["ids"]),
                "active" if a["active"] else "-",
                a["notifications_sent"],
                ",".join(n["kind"] for n in a["notifications"]),
            ]
            for a in alerts
        ]
        print(_table(rows, ["NAME", "SEVERITY", "EVENTS", "ENTITIES", "STATE", "SENT", "CHANNELS"]))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from modelmon_daemon.cli.report import build_report, plots

    client = _client(args)
    record = client.endpoint(args.uid)
    results = client.results(args.uid)
    status = client.status()
    potential = status.get("drift_thresholds", {}).get("potential", 0.5)
    detected = status.get("drift_thresholds", {}).get("detected", 0.7)
    if args.png:
        images = plots(record, results, potential, detected)
        if args.png not in images:
            raise CliError(f"no plot {args.png!r}; plots: {', '.join(images)}")
        Path(args.out).write_bytes(images[args.png])
    else:
        Path(args.out).write_text(build_report(record, results, potential, detected))
    print(f"wrote {args.out}")
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from modelmon_daemon.core.durations import parse_duration
    from modelmon_daemon.evaluate import (
        EvaluateError,
        as_rows,
        evaluate,
        write_results,
    )

    settings = load_settings(args.config)
    try:
        period = parse_duration(args.base_period) if args.base_period else None
    except ValueError as exc:
        raise CliError(f"--base-period: {exc}") from None
    try:
        result = evaluate(
            args.data,
            args.reference,
            settings,
            base_period=period,
            time_column=args.time_column,
            features=args.features.split(",") if args.features else None,
            uid=args.endpoint,
            project=args.project,
            progress=None if args.json else terminal_progress("window"),
        )
    except EvaluateError as exc:
        raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(as_rows(result), indent=2))
    else:
        data_dir = args.data_dir or settings.parquet_root
        paths = write_results(result, data_dir)
        drift = [r for r in result.results if r.name == "general_drift"]
        detected = sum(1 for r in drift if r.status is not None and int(r.status) == 2)
        print(
            f"{len(result.windows)} windows, {len(result.results)} results written to "
            f"{len(paths)} files under {data_dir}/results (endpoint_id {result.uid}); "
            f"general_drift detected in {detected} of {len(drift)} windows"
        )
    for failure in result.failures:
        print(f"application failure: {failure}", file=sys.stderr)
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from modelmon_daemon.cli.demo import run_demo

    return run_demo(args)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelmon-daemon")
    except PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="modelmon-daemon", description=__doc__)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="start the daemon (foreground unless --detach)")
    _add_daemon_flags(p)
    p.add_argument("--detach", action="store_true", help="run in the background")
    p.add_argument(
        "--wait", type=float, default=120, help="with --detach: seconds to wait for health"
    )
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("stop", help="stop the daemon of a data dir")
    p.add_argument("--data-dir")
    p.add_argument("--config")
    p.add_argument("--timeout", type=float, default=60)
    p.set_defaults(func=cmd_stop)

    for name, func, helptext in (
        ("status", cmd_status, "health and counters of a running daemon"),
        ("endpoints", cmd_endpoints, "list endpoints, or show one"),
        ("results", cmd_results, "an endpoint's results, oldest first"),
    ):
        p = sub.add_parser(name, help=helptext)
        _add_client_flags(p)
        p.add_argument("--json", action="store_true", help="machine-readable output")
        if name == "endpoints":
            p.add_argument("uid", nargs="*", help="UID, or show UID")
        if name == "results":
            p.add_argument("uid")
            p.add_argument("--since", help="only windows ending in the last DURATION, e.g. 1h")
            p.add_argument("--application")
            p.add_argument("--name")
        p.set_defaults(func=func)

    p = sub.add_parser("alerts", help="list, create, show, reset, delete alerts; their history")
    p.add_argument(
        "action",
        nargs="?",
        default="list",
        choices=["list", "create", "show", "reset", "events", "delete"],
    )
    p.add_argument("name", nargs="?")
    p.add_argument(
        "--file", help="with create: an alert config (JSON or TOML; [[alerts]] for several)"
    )
    p.add_argument("--entity", help="with reset: only this entity")
    _add_client_flags(p)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_alerts)

    p = sub.add_parser("report", help="a self-contained HTML report of an endpoint (or one PNG)")
    p.add_argument("uid")
    p.add_argument("--out", required=True, help="report.html, or the .png with --png")
    p.add_argument("--png", metavar="PLOT", help="export one plot: drift, operations, feature:NAME")
    _add_client_flags(p)
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("evaluate", help="run the applications over an offline dataset")
    p.add_argument("data", help="the data to analyze (.parquet or .csv)")
    p.add_argument("--reference", required=True, help="reference data (.parquet or .csv)")
    p.add_argument("--base-period", help="window length (default: the config's)")
    p.add_argument("--time-column", help="event time column; without it the file is one window")
    p.add_argument(
        "--features", help="comma-separated feature columns (default: numeric reference columns)"
    )
    p.add_argument("--endpoint", help="endpoint id for the results (default evaluate-<file>)")
    p.add_argument("--project", default="evaluate")
    p.add_argument(
        "--data-dir",
        help="where to write results: a folder or a URI such as s3://bucket/prefix "
        "(default: the daemon's Parquet tree, storage.parquet_uri or data_dir)",
    )
    p.add_argument("--config")
    p.add_argument("--json", action="store_true", help="print the results instead of writing them")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="run a short daemon with synthetic traffic and show drift")
    p.add_argument("--port", type=int, default=8471)
    p.add_argument("--data-dir", default=None, help="default: a new temporary folder")
    p.add_argument("--windows", type=int, default=6)
    p.set_defaults(func=cmd_demo)
    return parser


def _token_values_joined(argv: list[str]) -> list[str]:
    """`--token VALUE` as `--token=VALUE`: a token may begin with "-", which argparse would
    otherwise take for an option and answer "expected one argument"."""
    joined: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--token":
            value = next(args, None)
            joined.append(arg if value is None else f"--token={value}")
        else:
            joined.append(arg)
    return joined


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(_token_values_joined(sys.argv[1:] if argv is None else argv))
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"modelmon-daemon: {exc}", file=sys.stderr)
        return 2
    except ClientError as exc:
        print(f"modelmon-daemon: {exc}", file=sys.stderr)
        return 1
    except InvalidDaemonUrl as exc:
        print(f"modelmon-daemon: {exc}", file=sys.stderr)
        return 2
    except DaemonUnreachable as exc:  # the daemon is down: one line, no traceback
        url = exc.url or daemon_url(getattr(args, "url", None), getattr(args, "data_dir", None))
        reason = getattr(exc, "reason", None) or exc.strerror or exc
        print(f"modelmon-daemon: cannot reach the daemon at {url}: {reason}", file=sys.stderr)
        return 1
    except OSError as exc:  # a file given on the command line: one line naming it
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"modelmon-daemon: {where}{exc.strerror or exc}", file=sys.stderr)
        return 1
    except CliError as exc:
        print(f"modelmon-daemon: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


__all__ = ["main"]
