"""Live Ray actor handles from another Python process: `modelmon_daemon.connect(...)`."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelmon_daemon.core.daemon_file import read_daemon_file
from modelmon_daemon.core.ray_auth import AUTH_MODE_ENV, join_with_token_if_available, use_auth_mode


@dataclass
class DaemonHandles:
    """The running daemon's actors. Calls are plain Ray: `ray.get(h.controller.status.remote())`."""

    controller: Any
    writer: Any
    applications: list[Any]
    gcs_address: str

    def stream(self, uid: str) -> Any:
        """The stream actor holding endpoint `uid` (several endpoints may share one)."""
        import ray

        from modelmon_daemon.actors.remote import get_actor

        routes = ray.get(self.controller.route_table.remote())
        if uid not in routes:
            raise KeyError(f"endpoint {uid} has no stream actor")
        return get_actor(routes[uid])

    def status(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.controller.status.remote()))


def connect(target: str | os.PathLike[str] = "./modelmon-data") -> DaemonHandles:
    """Join the daemon's Ray cluster. `target` is its data dir (the daemon writes its Ray
    address there) or a Ray address such as `10.0.0.5:6379`."""
    import ray

    from modelmon_daemon.actors.remote import CONTROLLER, NAMESPACE, WRITER, get_actor

    path = Path(target).expanduser()
    address = str(target)
    if path.is_dir():
        info = read_daemon_file(path)
        if not info or not info.get("gcs_address"):
            raise ConnectionError(f"no running daemon found in {path} (no daemon.json)")
        address = info["gcs_address"]
        if info.get("ray_auth_mode") and AUTH_MODE_ENV not in os.environ:
            use_auth_mode(info["ray_auth_mode"])
    os.environ.pop("RAY_ADDRESS", None)
    if not ray.is_initialized():
        join_with_token_if_available()
        ray.init(address=address, namespace=NAMESPACE, log_to_driver=False)
    from ray.util import list_named_actors

    names = [
        a["name"] for a in list_named_actors(all_namespaces=True) if a.get("namespace") == NAMESPACE
    ]
    apps = [get_actor(n) for n in sorted(n for n in names if n.startswith("app:"))]
    return DaemonHandles(get_actor(CONTROLLER), get_actor(WRITER), apps, address)
