import pytest
import ray


@pytest.fixture(autouse=True)
def no_ray(monkeypatch):
    """Unit tests run without a cluster: any attempt to start one fails loudly."""

    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not start Ray")

    monkeypatch.setattr(ray, "init", refuse)
