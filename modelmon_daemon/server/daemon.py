"""Start-up and shut-down of the daemon: Ray, the actors, the HTTP server.

Start-up order matters for durability: the writer first (it removes files of commits that
never happened), then the application pool and the controller (which recreates every
routed stream actor; each replays its endpoints' logged events), then HTTP.
"""

from __future__ import annotations

import asyncio
import gc
import hashlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from modelmon_daemon.config import Settings, stream_row_budget
from modelmon_daemon.core import gc_policy
from modelmon_daemon.core.auth import TokenFileError, load_or_create_token
from modelmon_daemon.core.daemon_file import (
    DAEMON_FILE,
    http_url,
    live_pid,
    process_start_ticks,
    read_daemon_file,
)
from modelmon_daemon.core.durations import format_duration
from modelmon_daemon.core.errors import one_line
from modelmon_daemon.core.ray_auth import join_with_token_if_available
from modelmon_daemon.core.tasks import cancel_and_wait
from modelmon_daemon.core.uris import redacted_uri

if TYPE_CHECKING:
    from modelmon_daemon.server.app import Services

log = logging.getLogger("modelmon_daemon")


class StartupError(RuntimeError):
    pass


def ray_temp_dir(settings: Settings) -> str:
    """A short path: Ray's Unix sockets live under it and are limited to 107 bytes."""
    if settings.ray.temp_dir:
        return settings.ray.temp_dir
    digest = hashlib.sha1(str(settings.data_path).encode()).hexdigest()[:8]
    return str(Path(tempfile.gettempdir()) / f"mm-{digest}")


def open_listeners(host: str, port: int, backlog: int = 128) -> list[socket.socket]:
    """The daemon's listening sockets, one per address `host` resolves to (as aiohttp's
    TCPSite would make them, SO_REUSEADDR included), or a StartupError naming the address.
    They listen from start-up on, so the port is the daemon's while Ray starts (Ray chooses
    the ports of its services at random, checks them free and binds them later: a port
    only checked could be one of them); a client that connects early waits in the backlog
    and is answered once the daemon serves."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise StartupError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    listeners: list[socket.socket] = []
    seen: set[tuple[int, Any]] = set()
    try:
        for family, kind, proto, _, address in infos:
            if (family, address) in seen:
                continue
            seen.add((family, address))
            listener = socket.socket(family, kind, proto)
            listeners.append(listener)
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            listener.bind(address)
            listener.listen(backlog)
            listener.setblocking(False)
    except OSError as exc:
        close_listeners(listeners)
        raise StartupError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} "
            "(another process has it? choose one with --port)"
        ) from None
    return listeners


def close_listeners(listeners: list[socket.socket]) -> None:
    for listener in listeners:
        listener.close()


def check_listen_address(host: str, port: int) -> None:
    """StartupError naming the address unless the daemon could listen on it now: told in
    a line before anything starts (`start --detach` asks before it detaches)."""
    close_listeners(open_listeners(host, port))


def check_ray_address(address: str, wait_s: float = 5.0) -> None:
    """StartupError unless a `host:port` Ray address accepts a connection: Ray itself
    retries an unreachable GCS for minutes, printing only its own warnings. Other forms
    ("auto", "ray://…") are left to Ray."""
    if not address or address in ("auto", "local") or "://" in address:
        return
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise StartupError(f"ray.address {address!r}: expected host:port (the head's GCS)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=wait_s).close()
    except OSError as exc:
        raise StartupError(
            f"cannot reach the Ray cluster at {address}: {exc.strerror or exc} "
            "(is `ray start --head` running there?)"
        ) from None


def check_can_start(settings: Settings) -> None:
    """What start-up would fail on, told in a line before anything starts: the HTTP
    address, and the Ray cluster to join."""
    check_listen_address(settings.daemon.host, settings.daemon.port)
    check_ray_address(settings.ray.address)


def _init_ray(settings: Settings) -> dict[str, Any]:
    import ray
    from ray.exceptions import AuthenticationError

    os.environ.pop("RAY_ADDRESS", None)
    kwargs: dict[str, Any] = {
        "namespace": "modelmon",
        "log_to_driver": False,
        "configure_logging": False,
    }
    context: Any
    if settings.ray.address:
        token_mode = join_with_token_if_available()
        try:
            context = ray.init(address=settings.ray.address, **kwargs)
        except AuthenticationError as exc:  # token mode without a token: Ray says so
            raise StartupError(
                f"cannot join the Ray cluster at {settings.ray.address}: {exc}"
            ) from None
        except ConnectionError as exc:
            where = "~/.ray/auth_token or RAY_AUTH_TOKEN"
            hint = (
                f"token authentication on: is the token in {where} the cluster's?"
                if token_mode
                else f"if the cluster uses token authentication, put its token in {where}"
            )
            raise StartupError(
                f"cannot join the Ray cluster at {settings.ray.address}: {exc} ({hint})"
            ) from None
    else:
        if settings.ray.num_cpus:
            kwargs["num_cpus"] = settings.ray.num_cpus
        context = ray.init(
            address="local",
            include_dashboard=settings.ray.include_dashboard,
            dashboard_port=settings.ray.dashboard_port,
            dashboard_host="127.0.0.1",
            _temp_dir=ray_temp_dir(settings),
            **kwargs,
        )
    return {
        "gcs_address": context.address_info.get("gcs_address"),
        "dashboard_url": context.dashboard_url,
        # a local Ray started here uses token auth unless RAY_AUTH_MODE says otherwise;
        # connect() needs the same mode to join it
        "ray_auth_mode": os.environ.get("RAY_AUTH_MODE", "" if settings.ray.address else "token"),
    }


def _check_wal_period(settings: Settings, store: Any) -> None:
    """Logged records carry their window's start under the period they were logged
    with: a new period would misalign them, so it waits until the log is empty."""
    stored = store.get_meta("base_period")
    if stored is not None and stored != settings.windows.base_period and store.wal_size():
        was, now = format_duration(stored), format_duration(settings.windows.base_period)
        raise StartupError(
            f"windows.base_period changed from {was} to {now} while {store.wal_size()} logged "
            f"records wait for their windows; start once more with --base-period {was} until "
            "they are analyzed (`status --json`: wal_records 0), then with the new period"
        )
    store.put_meta("base_period", settings.windows.base_period)


def _load_config_alerts(settings: Settings, store: Any) -> None:
    """Alerts of the config file replace stored ones of the same name (state is kept)."""
    from modelmon_daemon.alerts.model import parse_alert

    for body in settings.alerts:
        alert = parse_alert(
            body, time.time(), settings.notifications.default_cooldown, from_config=True
        )
        existing = store.get_alert(alert.name)
        if existing is not None:
            alert.created = existing.created
        store.put_alert(alert)


async def serve(settings: Settings, stop_event: asyncio.Event | None = None) -> bool:
    """Run the daemon until SIGINT/SIGTERM (or `stop_event`). True when it stopped because
    the node of the Ray it started was lost (`run` then starts it again)."""
    data = settings.data_path
    data.mkdir(parents=True, exist_ok=True)
    previous = read_daemon_file(data)
    running = live_pid(previous)
    if running is not None and running != os.getpid():
        raise StartupError(f"a daemon (pid {running}) already runs on {data}")
    listeners = open_listeners(settings.daemon.host, settings.daemon.port)
    try:
        check_ray_address(settings.ray.address)
        return await _serve_on(settings, listeners, stop_event)
    finally:
        close_listeners(listeners)  # the HTTP server closed them already when it served


async def _serve_on(
    settings: Settings, listeners: list[socket.socket], stop_event: asyncio.Event | None
) -> bool:
    import lmdb
    import pyarrow as pa
    import ray

    from modelmon_daemon.actors import remote
    from modelmon_daemon.core.records import EndpointSpec
    from modelmon_daemon.server.app import Services, allowed_hosts, build_app
    from modelmon_daemon.server.directory import ActorDirectory
    from modelmon_daemon.storage.lmdb_store import LmdbStore
    from modelmon_daemon.storage.parquet_store import ParquetStore

    data = settings.data_path
    try:
        token = load_or_create_token(settings.token_path)
    except TokenFileError as exc:
        raise StartupError(
            f"{exc}; remove it to have a new one made, or write a token there"
        ) from None
    try:
        store = LmdbStore(data, settings.storage.lmdb_map_size, settings.storage.lmdb_max_map_size)
    except lmdb.Error as exc:  # a damaged or foreign file: one line, nothing touched
        raise StartupError(
            f"cannot open the store: {exc}; restore it from a backup, or move the data "
            "dir aside to start empty"
        ) from None
    try:
        parquet = ParquetStore(settings.parquet_root)
    except (OSError, ValueError, pa.ArrowException) as exc:  # a bad URI, an unreachable store
        raise StartupError(
            f"cannot open the Parquet store {redacted_uri(settings.parquet_root)}: {exc}"
        ) from None
    _check_wal_period(settings, store)
    _load_config_alerts(settings, store)
    store.put_meta("label_ttl", settings.performance.label_ttl)
    ray_lost = False
    t0 = time.time()
    ray_info = _init_ray(settings)
    log.info("ray up in %.1fs (%s)", time.time() - t0, ray_info.get("gcs_address"))
    try:
        if settings.ray.address:
            for name in remote.all_actor_names():  # a previous run's actors on the cluster
                ray.kill(remote.get_actor(name), no_restart=True)
        settings.applications.pool_size = remote.pool_size(settings)
        settings.stream.max_actors = remote.stream_actor_limit(settings)
        settings.stream.max_buffered_rows = stream_row_budget(settings, settings.stream.max_actors)
        settings_dict = settings.to_dict()
        runtime = remote.RayRuntime(settings_dict)
        writer = runtime.writer()
        await writer.ping.remote()
        apps = runtime.application_actors()
        names = await apps[0].names.remote()
        await asyncio.gather(*(a.ping.remote() for a in apps))
        controller = runtime.controller()
        await controller.ping.remote()
        await controller.set_applications.remote(names)
        await controller.ensure_running.remote()
        directory = ActorDirectory(controller, writer, apps, remote.get_actor)
        directory.routes.update(await controller.route_table.remote())
        services = Services(
            settings=settings,
            store=store,
            parquet=parquet,
            directory=directory,
            executor=ThreadPoolExecutor(max_workers=4, thread_name_prefix="modelmon-io"),
            specs={e["uid"]: EndpointSpec.from_dict(e) for e in store.list_endpoints()},
            started=time.time(),
            token=token,
            allowed_hosts=allowed_hosts(settings),
            runtime=runtime,
            owner_state=remote.LogOwnerState(writer),
        )
        app = build_app(services)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        try:
            ray_lost = await _serve_until_stopped(
                settings, services, runner, listeners, data, ray_info, stop_event
            )
        finally:
            await runner.cleanup()  # stops HTTP, then flushes the durability log
        services.executor.shutdown(wait=True)
        if settings.ray.address:
            for name in remote.all_actor_names():
                ray.kill(remote.get_actor(name), no_restart=True)
    finally:
        if not ray_lost:
            ray.shutdown()
        # else not: a driver whose raylet is gone exits the process in ray.shutdown();
        # run() stops what is left of that Ray and starts the daemon again
        store.close()
        try:
            current = read_daemon_file(data)
            if current and current.get("pid") == os.getpid():
                (data / DAEMON_FILE).unlink()
        except OSError:
            pass
    if not ray_lost:
        print("modelmon-daemon stopped", flush=True)
    return ray_lost


async def _serve_until_stopped(
    settings: Settings,
    services: Services,
    runner: web.AppRunner,
    listeners: list[socket.socket],
    data: Path,
    ray_info: dict[str, Any],
    stop_event: asyncio.Event | None,
) -> bool:
    """Listen, announce the daemon (its file in the data dir, the log, stdout) and serve
    until SIGINT/SIGTERM or `stop_event`, or until the node of the Ray it started is lost
    (then True); the caller cleans the runner up either way."""
    import ray

    from modelmon_daemon.actors import remote
    from modelmon_daemon.server.ray_watch import local_node_alive, watch_node

    for listener in listeners:  # listening since start-up: nothing could take the port
        await web.SockSite(runner, listener).start()
    port = runner.addresses[0][1] if runner.addresses else settings.daemon.port
    url = http_url(settings.daemon.host, port)
    (data / DAEMON_FILE).write_text(
        json.dumps(
            {
                "pid": os.getpid(),
                "proc_start": process_start_ticks(os.getpid()),  # tells a reused pid apart
                "url": url,
                "host": settings.daemon.host,
                "port": port,
                "namespace": remote.NAMESPACE,
                **ray_info,
                "started": time.time(),
                "data_dir": str(data),
            }
        )
    )
    log.info(
        "modelmon-daemon listening on %s (data in %s, ray dashboard %s)",
        url,
        data,
        ray_info.get("dashboard_url") or "off",
    )
    tree = settings.parquet_root
    shown = "" if tree == str(data) else f"; parquet: {redacted_uri(tree)}"
    print(
        f"modelmon-daemon ready on {url} (data: {data}{shown}; token: {settings.token_path})",
        flush=True,
    )
    _settle_garbage_collector()
    loop = asyncio.get_running_loop()
    stop = stop_event or asyncio.Event()
    lost: list[bool] = []

    def on_lost() -> None:
        lost.append(True)
        stop.set()

    tasks = [loop.create_task(gc_policy.collect_in_loop())]
    if not settings.ray.address:  # a Ray of our own: when its node goes, start it again
        node_id = ray.get_runtime_context().get_node_id()
        tasks.append(loop.create_task(watch_node(lambda: local_node_alive(node_id), on_lost)))
    try:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("shutting down" if not lost else "stopping to restart Ray")
    finally:
        for task in tasks:
            await cancel_and_wait(task)
    if not lost:
        try:  # no tick may start while the actors go
            await asyncio.wait_for(services.directory.controller.stop_loop.remote(), 10.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("the controller did not stop its loop: %s", one_line(exc))
    return bool(lost)


def _settle_garbage_collector() -> None:
    """Move everything start-up made (Ray, modules, endpoint records) out of the cyclic
    collector's reach: with the start-up heap tracked, every full collection walked it
    again (JSON decoding cost 2.3x as much in a heap of two million objects; 0.7x after
    gc.freeze)."""
    gc.collect()
    gc.freeze()


def run(settings: Settings) -> None:
    logging.basicConfig(
        level=os.environ.get("MODELMON_LOG_LEVEL", "INFO"),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    runner: Callable[[Coroutine[Any, Any, bool]], bool] = asyncio.run
    if settings.daemon.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            logging.getLogger(__name__).info("uvloop is not installed: asyncio's loop")
        else:
            runner = uvloop.run
    if runner(serve(settings)):  # the Ray it started was lost: start everything again
        _restart_after_losing_ray()


def _restart_after_losing_ray() -> None:
    """Stop what is left of the Ray this process started (its other processes are our
    children: GCS, dashboard, monitors) and replace this process by the same command:
    same pid, a fresh Ray, and actors that rebuild their state from LMDB, so every
    acknowledged event is analyzed once."""
    log.warning("restarting: acknowledged events wait in the log and are analyzed once")
    children = _child_pids(os.getpid())
    for pid in children:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    for pid in children:
        try:
            os.waitpid(pid, 0)
        except ChildProcessError:
            pass
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def _child_pids(parent: int) -> list[int]:
    """Processes whose parent is `parent` (from /proc)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        # "pid (comm) state ppid ...": comm may hold spaces and parentheses
        fields = stat[stat.rindex(")") + 2 :].split()
        if len(fields) > 1 and int(fields[1]) == parent:
            pids.append(int(entry.name))
    return pids
