"""The one place where plain classes become Ray actors, and where actors are found by
name. Everything else talks to actors through the handles this returns."""

from __future__ import annotations

from typing import Any

import ray

from modelmon_daemon.actors.application import ApplicationActor
from modelmon_daemon.actors.controller import ControllerActor
from modelmon_daemon.actors.stream import StreamActor
from modelmon_daemon.actors.writer import WriterActor
from modelmon_daemon.config import Settings

NAMESPACE = "modelmon"
CONTROLLER = "controller"
WRITER = "writer"


def stream_name(uid: str) -> str:
    return f"stream:{uid}"


def app_name(index: int) -> str:
    return f"app:{index}"


_ray_remote: Any = ray.remote  # its overloads do not list actor-only options
_restartable = _ray_remote(num_cpus=0, max_restarts=-1, max_task_retries=0)

RemoteStream: Any = _restartable(StreamActor)
RemoteWriter: Any = _restartable(WriterActor)
RemoteApplication: Any = _restartable(ApplicationActor)
RemoteController: Any = _ray_remote(
    num_cpus=0, max_restarts=-1, max_task_retries=0, max_concurrency=1000
)(ControllerActor)


def pool_size(settings: Settings) -> int:
    if settings.applications.pool_size:
        return settings.applications.pool_size
    cpus = int(ray.cluster_resources().get("CPU", 1)) if ray.is_initialized() else 1
    return max(1, cpus)


class RayRuntime:
    """Creates the daemon's actors (detached, named, in the `modelmon` namespace) or
    returns the live ones. The actors that open the LMDB environment (controller, writer,
    stream actors) are pinned to this node, the one that holds the data dir; application
    actors hold no state and are spread over the cluster's nodes, one per node in turn."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.settings_dict = settings
        self.settings = Settings.from_dict(settings)
        self.node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None

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

            # hard: Ray's soft affinity spills num_cpus=0 actors back to busy nodes; an
            # actor whose node is lost stays down and the controller uses the others
            opts["scheduling_strategy"] = NodeAffinitySchedulingStrategy(node, soft=False)
        return opts

    def stream_actor(self, name: str) -> Any:
        return RemoteStream.options(**self._opts(name)).remote(name, self.settings_dict)

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
