"""Secure by default, over HTTP against the real daemon: every /v1 route needs the token,
the Host header is checked, only JSON or msgpack bodies are read, command notifications
and host files cannot be reached from the network, and a receiver's reply is never
stored."""

from __future__ import annotations

import json
import math
import os
import stat
import time

import numpy as np
import pytest

from tests.e2e.conftest import http
from tests.receivers import HttpReceiver
from tests.routes import OPEN_ROUTES, V1_ROUTES

pytestmark = pytest.mark.e2e
P = 30.0


def concrete(path: str) -> str:
    return path.replace("{uid}", "sec-ep").replace("{name}", "sec-alert")


def ensure_endpoint(daemon) -> None:
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": "sec-ep",
            "project": "sec",
            "name": "sec",
            "feature_names": ["a", "b"],
            "reference": {"rows": [[float(i), float(-i)] for i in range(50)]},
        },
    )
    assert status in (200, 201)


def test_token_file_is_private(daemon):
    token_file = daemon.data_dir / "auth_token"
    assert stat.S_IMODE(os.stat(token_file).st_mode) == 0o600
    assert len(daemon.token) >= 32


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
def test_every_v1_route_needs_the_token(daemon, method, path):
    ensure_endpoint(daemon)
    url = daemon.url + concrete(path)
    body = {} if method == "POST" else None
    for token in (None, "wrong-" + daemon.token, daemon.token[:-1]):
        status, answer = http(method, url, body, token=token)
        assert status == 401, (method, path, token, answer)
        assert answer["error"]["code"] == "unauthorized"
    # the header is there for clients that follow the challenge
    import urllib.error
    import urllib.request

    req = urllib.request.Request(url, method=method, data=b"{}" if body is not None else None)
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(req, timeout=10)
    assert err.value.headers["WWW-Authenticate"].startswith("Bearer")
    # with the token the route answers (anything but 401)
    status, _ = http(method, url, body, token=daemon.token)
    assert status != 401


@pytest.mark.parametrize(("method", "path"), OPEN_ROUTES)
def test_health_and_metrics_stay_open(daemon, method, path):
    import urllib.request

    with urllib.request.urlopen(daemon.url + path, timeout=10) as resp:
        assert resp.status == 200


def test_a_foreign_host_header_is_refused(daemon):
    # DNS rebinding: a page of evil.example resolving to 127.0.0.1
    status, body = daemon.get("/v1/endpoints", headers={"Host": "evil.example:8470"})
    assert status == 403 and body["error"]["details"]["field"] == "Host"
    status, _ = http("GET", daemon.url + "/healthz", headers={"Host": "evil.example"})
    assert status == 403
    status, _ = daemon.get("/v1/endpoints", headers={"Host": f"localhost:{daemon.port}"})
    assert status == 200


def test_a_cross_site_simple_request_is_refused_and_changes_nothing(daemon):
    before = {e["uid"] for e in daemon.get("/v1/endpoints")[1]["endpoints"]}
    body = json.dumps(
        {"uid": "csrf-ep", "project": "x", "name": "x", "feature_names": ["a"]}
    ).encode()
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data"):
        status, answer = daemon.post("/v1/endpoints", body, content_type=content_type)
        assert status == 415, answer
        assert answer["error"]["details"]["field"] == "Content-Type"
    # ... and without the token (what a browser page would send) it never gets that far
    status, _ = http("POST", daemon.url + "/v1/endpoints", body, content_type="text/plain")
    assert status == 401
    after = {e["uid"] for e in daemon.get("/v1/endpoints")[1]["endpoints"]}
    assert after == before and "csrf-ep" not in after


def test_no_content_type_is_read_as_json(daemon):
    """MLRun's serving posts without a Content-Type, naming an endpoint_id that its API
    server (not the stream) created: the endpoint is created under that uid."""
    event = {
        "endpoint_id": "a1b2c3d4e5f6",
        "class": "SecModel",
        "function_uri": "sec/serving",
        "model": "m",
        "request": {"id": "n1", "inputs": [[1.0, 2.0]]},
        "resp": {"outputs": [1]},
        "when": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()) + ".000000",
        "microsec": 100,
    }
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", daemon.port, timeout=30)
    conn.request(  # http.client adds no Content-Type of its own (urllib would)
        "POST",
        "/v1/events",
        body=json.dumps(event).encode(),
        headers={"Authorization": f"Bearer {daemon.token}"},
    )
    resp = conn.getresponse()
    assert resp.status == 202, resp.read()
    conn.close()
    status, record = daemon.get("/v1/endpoints/a1b2c3d4e5f6")
    assert status == 200 and record["project"] == "sec" and record["feature_names"] == ["f0", "f1"]
    assert record["model_class"] == "SecModel"


def test_command_notifications_only_from_the_config_file(daemon):
    alert = {
        "name": "sec-cmd",
        "entities": {"kind": "model-endpoint-result", "ids": ["*"]},
        "trigger": {"events": ["data-drift-detected"]},
        "notifications": [{"kind": "command", "argv": ["/bin/touch", "/tmp/pwned"]}],
    }
    status, body = daemon.post("/v1/alerts", alert)
    assert status == 403 and body["error"]["details"]["field"] == "notifications[0].kind"
    status, body = daemon.get("/v1/alerts/sec-cmd")
    assert status == 404


def test_reference_path_only_under_reference_dirs(daemon, tmp_path):
    secret = "/etc/passwd"
    missing = "/etc/does-not-exist.csv"
    answers = []
    for path in (secret, missing, "../../etc/passwd", str(tmp_path) + "/../../../../etc/passwd"):
        status, body = daemon.post(
            "/v1/endpoints",
            {
                "uid": "sec-ref",
                "project": "x",
                "name": "x",
                "feature_names": ["root"],
                "reference": {"path": path},
            },
        )
        assert status == 403, body
        assert body["error"]["details"]["field"] == "reference.path"
        answers.append(body["error"]["message"])
    # the same answer whether the file exists or not, and nothing of its content
    assert len(set(answers)) == 1 and "root:" not in answers[0]
    # inside a reference dir, a malformed file is refused without echoing its lines
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\nsecret-line-content,1,2,3\n")
    status, body = daemon.post(
        "/v1/endpoints",
        {
            "uid": "sec-ref",
            "project": "x",
            "name": "x",
            "feature_names": ["a", "b"],
            "reference": {"path": str(bad)},
        },
    )
    assert status == 400 and "secret-line-content" not in json.dumps(body)


def test_a_webhook_reply_is_never_stored(daemon):
    """SSRF: the reply of whatever the URL points at must not leak into the history."""
    receiver = HttpReceiver().start()
    receiver.fail_with = 500
    try:
        alert = {
            "name": "sec-ssrf",
            "entities": {"kind": "model-endpoint-result", "ids": ["sec-ssrf-ep"]},
            "trigger": {"events": ["data-drift-detected"]},
            "notifications": [{"kind": "webhook", "url": receiver.url + "/fail"}],
        }
        assert daemon.post("/v1/alerts", alert)[0] == 201
        rng = np.random.default_rng(5)
        status, _ = daemon.post(
            "/v1/endpoints",
            {
                "uid": "sec-ssrf-ep",
                "project": "sec",
                "name": "ssrf",
                "feature_names": ["a", "b"],
                "reference": {"rows": rng.normal(size=(500, 2)).tolist()},
            },
        )
        assert status == 201
        start = (math.floor(time.time() / P) - 3) * P
        status, _ = daemon.post(
            "/v1/endpoints/sec-ssrf-ep/events",
            {
                "inputs": rng.normal(4, 1, size=(200, 2)).tolist(),
                "timestamps": (start + np.linspace(0, P - 1, 200)).tolist(),
            },
        )
        assert status == 202

        def failures():
            _, body = daemon.get("/v1/alerts/sec-ssrf/events")
            return [e for e in body["events"] if e["action"] == "delivery_failed"]

        failed = daemon.wait_for(failures, timeout=90)
        assert "HTTP 500" in failed[0]["error"]
        assert "receiver says no" not in json.dumps(failed)
    finally:
        daemon.delete("/v1/alerts/sec-ssrf")
        receiver.stop()
