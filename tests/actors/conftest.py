import os
import shutil
import tempfile

import pytest
import ray


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray for every actor test of the session."""
    os.environ.pop("RAY_ADDRESS", None)
    temp = tempfile.mkdtemp(prefix="mmt-", dir="/tmp")
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        namespace="modelmon",
        _temp_dir=temp,
        log_to_driver=False,
        configure_logging=False,
    )
    yield
    ray.shutdown()
    shutil.rmtree(temp, ignore_errors=True)


@pytest.fixture
def clean_actors(ray_cluster):
    from modelmon_daemon.actors.remote import all_actor_names, get_actor

    yield
    for name in all_actor_names():
        try:
            ray.kill(get_actor(name), no_restart=True)
        except ValueError:
            pass
