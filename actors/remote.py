"""The one place where plain classes become Ray actors, and where actors are found by
name. Everything else talks to actors through the handles this returns."""

from __future__ import annotations

import os
import zlib
from typing import Any, TypeVar

import ray

from modelmon_daemon.actors.application import ApplicationActor
from modelmon_daemon.actors.controller import ControllerActor
from modelmon_daemon.actors.ingress import AppFactory, NodeIngestionActor
from modelmon_daemon.actors.stream import StreamActor
from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.config import Settings
from modelmon_daemon.core import gc_policy
from modelmon_daemon.core.huge_pages import ingest_runtime_env

NAMESPACE = "modelmon"
CONTROLLER = "controller"
WRITER = "writer"


def stream_name(uid: str) -> str:
    return f"stream:{uid}"


def app_name(index: int) -> str:
    return f"app:{index}"


def ingestion_name(node_id: str) -> str:
    return f"ingest:{node_id[:16]}"


LOG_GROUP = "log"  # the writer's concurrency group for appends from other nodes
STATE_GROUP = "state"  # ... and for labels and the notification outbox


_ray_remote: Any = ray.remote  # its overloads do not list actor-only options
_restartable = _ray_remote(num_cpus=0, max_restarts=-1, max_task_retries=0)

T = TypeVar("T")


def _scheduled_gc(cls: type[T]) -> type[T]:
    """The same class, whose process collects cyclic garbage on a schedule (see
    core/gc_policy.py): a Ray actor process does nothing else."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        gc_policy.collect_in_thread()
        cls.__init__(self, *args, **kwargs)

    return type(cls.__name__, (cls,), {"__init__": __init__, "__qualname__": cls.__qualname__})


# A stream actor reserves 1 MiB of Ray's logical `memory` resource, a token: Ray follows
# soft node affinity only for actors that reserve some resource (with none, 6 actors asked
# for round robin on 3 nodes landed elsewhere 11 times in 18 here; with 1 MiB, 0 in 30), and
# soft is what lets Ray restart the actor on another node when its own is lost. Memory,
# not CPU: a cluster busy with other work often has no CPU free, rarely no memory.
STREAM_ACTOR_MEMORY = 1 << 20
RemoteStream: Any = _ray_remote(
    num_cpus=0, memory=STREAM_ACTOR_MEMORY, max_restarts=-1, max_task_retries=0
)(_scheduled_gc(StreamActor))
RemoteWriter: Any = _ray_remote(
    num_cpus=0,
    max_restarts=-1,
    max_task_retries=0,
    concurrency_groups={LOG_GROUP: 1, STATE_GROUP: 1},
)(_scheduled_gc(WriterActor))
RemoteNodeIngestion: Any = _restartable(_scheduled_gc(NodeIngestionActor))
RemoteApplication: Any = _restartable(_scheduled_gc(ApplicationActor))
RemoteController: Any = _ray_remote(
    num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000
)(_scheduled_gc(ControllerActor))


def cluster_cpus() -> int:
    return int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1


def pool_size(settings: Settings) -> int:
    if settings.applications.pool_size:
        return settings.applications.pool_size
    return max(1, cluster_cpus())


STREAM_ACTORS_PER_CPU = 2
MIN_STREAM_ACTORS, MAX_STREAM_ACTORS = 2, 16


def stream_actor_limit(settings: Settings, cpus: int | None = None) -> int:
    """stream.max_actors, or when 0, two per CPU of the cluster (`cpus`, by default
    asked of Ray): more actors than that only add hand-offs, ~150 MiB each and their
    idle timers (on 2 CPUs, 1000 endpoints ticked faster with 4 than with 16 and held
    1.7 GiB less)."""
    if settings.stream.max_actors:
        return settings.stream.max_actors
    wanted = STREAM_ACTORS_PER_CPU * (cluster_cpus() if cpus is None else cpus)
    return min(MAX_STREAM_ACTORS, max(MIN_STREAM_ACTORS, wanted))


class RayRuntime:
    """Creates the daemon's actors (detached, named, in the `modelmon` namespace) or
    returns the live ones. The writer owns the LMDB environment and is pinned to this
    node, the one that holds the data dir (as is the controller, next to it); stream
    actors and application actors hold no LMDB handle and are spread over the cluster's
    nodes."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings_dict = settings
        self.settings = Settings.from_dict(settings)
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
        # stream actors and ingestion servers get the daemon's huge pages back; the
        # tick's actors start without them, as Ray's processes (see core/huge_pages.py)
        self.ingest_env = ingest_runtime_env(os.environ)

    def _ingest_opts(self, opts: dict[str, Any]) -> dict[str, Any]:
        return {**opts, "runtime_env": self.ingest_env} if self.ingest_env else opts

    def _opts(self, name: str, pinned: bool = True, node: str | None = None) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "name": name,
            "namespace": NAMESPACE,
            "lifetime": "detached",
            "get_if_exists": True,
        }
        if pinned and self.node_id:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(self.node_id, soft=False)
        elif node is not None:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # hard: Ray does not follow soft affinity for actors that reserve
            # nothing (see STREAM_ACTOR_MEMORY); an actor whose node is lost stays down and the
            # controller uses the others
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return opts

    def stream_actor(self, name: str, index: int | None = None) -> Any:
        """The `index`-th stream actor on the index-th alive node, round robin (a few
        actors still cover every node), or without an index on a node chosen by a hash of
        its name; softly: if that node is lost, Ray restarts the actor on another one,
        where it rebuilds its buffers from the log owner."""
        opts = self._opts(name, pinned=False)
        nodes = alive_nodes() if ray.is_initialized() else []
        if nodes:
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            slot = zlib.crc32(name.encode()) if index is None else index
            node = nodes[slot % len(nodes)]
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=True)
        return RemoteStream.options(**self._ingest_opts(opts)).remote(name, self.settings_dict)

    def writer(self) -> Any:
        return RemoteWriter.options(**self._opts(WRITER)).remote(self.settings_dict)

    def application_actors(self) -> list[Any]:
        """Actor i on the i-th alive node, round robin: spread on purpose (Ray's SPREAD is
        best effort, and num_cpus=0 actors would otherwise all land on one node)."""
        nodes = alive_nodes() if ray.is_initialized() else []
        return [
            RemoteApplication.options(
                **self._opts(
                    app_name(i), pinned=False, node=nodes[i % len(nodes)] if nodes else None
                )
            ).remote(i, self.settings_dict)
            for i in range(pool_size(self.settings))
        ]

    def controller(self) -> Any:
        return RemoteController.options(**self._opts(CONTROLLER)).remote(self.settings_dict)

    def node_ingestion(self, node_id: str, token: str, build_app: AppFactory) -> Any:
        """The ingestion server of `node_id`, held there (it serves that node's address)."""
        opts = self._ingest_opts(self._opts(ingestion_name(node_id), pinned=False, node=node_id))
        return RemoteNodeIngestion.options(**opts).remote(self.settings_dict, token, build_app)


def node_addresses() -> dict[str, str]:
    """Alive nodes: node id -> the address Ray reaches it at."""
    return {
        n["NodeID"]: str(n.get("NodeManagerAddress") or "127.0.0.1")
        for n in ray.nodes()
        if n.get("Alive")
    }


async def log_append(
    writer: Any,
    records: list[tuple[str, float, dict[str, Any]]],
    new_endpoints: list[dict[str, Any]],
    registered: list[dict[str, Any]],
) -> list[int]:
    """Append to the log owner from another node, on the writer's log thread."""
    call = writer.append.options(concurrency_group=LOG_GROUP)
    seqs: list[int] = await call.remote(records, new_endpoints, registered)
    return seqs


async def logged_rows(writer: Any) -> int:
    rows: int = await writer.logged_rows.options(concurrency_group=LOG_GROUP).remote()
    return rows


async def endpoints_raw(writer: Any, uids: list[str]) -> list[bytes | None]:
    raws: list[bytes | None] = await writer.get_endpoints_raw.options(
        concurrency_group=LOG_GROUP
    ).remote(uids)
    return raws


class LogOwnerClient:
    """The log owner's state (storage/log_view.py) seen from any node: each call is one
    round trip to the writer actor. Blocking: used from stream actors' sync methods and
    from the controller's worker threads."""

    def __init__(self, handle: Any | None = None) -> None:
        self._handle = handle

    @property
    def handle(self) -> Any:
        if self._handle is None:
            self._handle = get_actor(WRITER)
        return self._handle

    def _call(self, method: str, *args: Any, group: str | None = None) -> Any:
        call = getattr(self.handle, method)
        if group is not None:
            call = call.options(concurrency_group=group)
        return ray.get(call.remote(*args))

    def routes(self) -> dict[str, str]:
        result: dict[str, str] = self._call("routes")
        return result

    def put_routes(self, routes: list[tuple[str, str]]) -> None:
        self._call("put_routes", routes)

    def get_endpoint(self, uid: str) -> dict[str, Any] | None:
        result: dict[str, Any] | None = self._call("get_endpoint", uid)
        return result

    # endpoint records are read on the writer's state thread: during a tick its main
    # thread is busy with stage_events

    def get_endpoints_raw(self, uids: list[str]) -> list[bytes | None]:
        result: list[bytes | None] = self._call("get_endpoints_raw", uids, group=STATE_GROUP)
        return result

    def get_endpoints_changed(
        self, uids: list[str], known: list[str | None]
    ) -> list[tuple[str, bytes | None] | None]:
        result: list[tuple[str, bytes | None] | None] = self._call(
            "get_endpoints_changed", uids, known, group=STATE_GROUP
        )
        return result

    def get_state(self, uid: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("get_state", uid)
        return result

    def wal_records(self, uid: str) -> list[tuple[int, float, dict[str, Any]]]:
        result: list[tuple[int, float, dict[str, Any]]] = self._call("wal_records", uid)
        return result

    def wal_batches(self, uid: str, seqs: list[int]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("wal_batches", uid, seqs)
        return result


def alive_nodes() -> list[str]:
    """Node ids of the cluster's alive nodes, in a stable order."""
    return sorted(n["NodeID"] for n in ray.nodes() if n.get("Alive"))


def get_actor(name: str) -> Any:
    return ray.get_actor(name, namespace=NAMESPACE)


def all_actor_names() -> list[str]:
    """Named actors of the daemon that are alive in the cluster."""
    from ray.util import list_named_actors

    return sorted(
        a["name"] for a in list_named_actors(all_namespaces=True) if a.get("namespace") == NAMESPACE
    )


class LogOwnerState:
    """Labels and the notification outbox, owned by the writer, for the HTTP process:
    each call runs on the writer's "state" thread, never queued behind a tick."""

    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def _call(self, method: str) -> Any:
        return getattr(self.writer, method).options(concurrency_group=STATE_GROUP)

    async def log_labels(self, uid: str, ids: list[str], labels: list[Any], now: float) -> int:
        """Store labels durably; how many joined a committed prediction at once."""
        joined: int = await self._call("log_labels").remote(uid, ids, labels, now)
        return joined

    async def purge(self, uid: str) -> int:
        """Delete an endpoint's rows from Parquet. On the writer's main thread, between
        its ticks and compactions: the shared files it rewrites are theirs too."""
        files: int = await self.writer.purge.remote(uid)
        return files

    async def entries(self) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = await self._call("outbox").remote()
        return found

    async def retry(self, entry: dict[str, Any], error: str, next_at: float) -> None:
        await self._call("outbox_retry").remote(entry, error, next_at)

    async def done(self, entry: dict[str, Any], delivered: bool, error: str = "") -> None:
        await self._call("outbox_done").remote(entry, delivered, error)
