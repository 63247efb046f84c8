"""The route list the auth and fuzz tests walk is the application's, exactly."""

from modelmon_daemon.config import Settings
from modelmon_daemon.server.app import Services, build_app
from tests.routes import OPEN_ROUTES, V1_ROUTES


def test_every_route_is_listed_for_the_auth_tests():
    services = Services(
        settings=Settings(), store=None, parquet=None, directory=None, executor=None
    )  # type: ignore[arg-type]
    app = build_app(services)
    routes = {
        (r.method, r.resource.canonical)
        for r in app.router.routes()
        if r.method != "HEAD" and r.resource is not None
    }
    assert routes == set(V1_ROUTES) | set(OPEN_ROUTES)
