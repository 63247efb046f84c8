"""Alerts end to end: drifted traffic into the real daemon -> exactly the expected
notifications on every channel (webhook, Slack, SMTP, command), once; none for a
stationary endpoint; none repeated after a restart; a receiver that is down is retried
while the pipeline keeps analyzing."""

from __future__ import annotations

import math
import sys
import time

import numpy as np
import pytest

from tests.e2e.conftest import Daemon
from tests.ports import free_port
from tests.receivers import HttpReceiver, SmtpReceiver

pytestmark = pytest.mark.e2e
P = 30.0


def register(daemon, uid, rng):
    status, _ = daemon.post(
        "/v1/endpoints",
        {
            "uid": uid,
            "project": "shop",
            "name": uid,
            "feature_names": ["a", "b"],
            "reference": {"rows": rng.normal(size=(1000, 2)).tolist()},
        },
    )
    assert status == 201


def post_window(daemon, uid, start, rng, shift):
    rows = rng.normal(shift, 1, size=(200, 2))
    status, _ = daemon.post(
        f"/v1/endpoints/{uid}/events",
        {
            "inputs": rows.tolist(),
            "timestamps": (start + np.linspace(0, P - 1, 200)).tolist(),
        },
    )
    assert status == 202


def toml_list(values):
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def test_every_channel_notified_once_and_never_again_after_restart(short_tmp, tmp_path):
    web = HttpReceiver().start()
    smtp = SmtpReceiver().start()
    actions = tmp_path / "actions.jsonl"
    script = (
        f"import sys; open({str(actions)!r}, 'a')"
        ".write(sys.stdin.read().replace(chr(10), ' ') + chr(10))"
    )
    argv = toml_list([sys.executable, "-c", script]).replace(chr(92), chr(92) * 2)
    email = (
        f'kind = "email", smtp_host = "127.0.0.1", smtp_port = {smtp.port}, '
        'from = "mm@example.com", to = ["oncall@example.com"]'
    )
    cfg = tmp_path / "alerts.toml"
    cfg.write_text(f"""
[[alerts]]
name = "drift-everywhere"
summary = "Production drift"
severity = "high"
entities = {{ kind = "model-endpoint-result", ids = ["*"] }}
trigger = {{ events = ["data-drift-detected"] }}
criteria = {{ count = 1, period = "10m" }}
reset_policy = "manual"
cooldown = "1h"
notifications = [
  {{ kind = "webhook", url = "{web.url}/hook", secret = "s3cret" }},
  {{ kind = "slack", webhook_url = "{web.url}/slack" }},
  {{ {email} }},
  {{ kind = "command", argv = {argv} }},
]
""")
    only_histogram = ["--set", "applications.builtin=histogram-data-drift"]
    daemon = Daemon(
        short_tmp / "alerts", free_port(), ["--config", str(cfg), *only_histogram]
    ).start()
    try:
        rng = np.random.default_rng(11)
        register(daemon, "drifty", rng)
        register(daemon, "steady", rng)
        first = (math.floor(time.time() / P) - 4) * P
        for w in range(3):
            post_window(daemon, "drifty", first + w * P, rng, shift=3.0 if w >= 1 else 0.0)
            post_window(daemon, "steady", first + w * P, rng, shift=0.0)

        def analyzed(uid):
            _, res = daemon.get(f"/v1/endpoints/{uid}/results?name=general_drift")
            return res["results"]

        daemon.wait_for(lambda: len(analyzed("drifty")) == 3 and len(analyzed("steady")) == 3)
        assert [r["status"] for r in analyzed("drifty")] == [0, 2, 2]
        assert {r["status"] for r in analyzed("steady")} == {0}

        def delivered():
            _, body = daemon.get("/v1/alerts/drift-everywhere/events")
            return [e for e in body["events"] if e["action"] == "delivered"]

        daemon.wait_for(lambda: len(delivered()) == 4)
        assert len(web.on("/hook")) == 1 and len(web.on("/slack")) == 1
        hook = web.on("/hook")[0]["json"]
        assert hook["event"]["endpoint_id"] == "drifty"
        assert hook["event"]["entity"] == "drifty.histogram-data-drift.result.general_drift"
        assert hook["event"]["start"] == time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(first + P))
        assert "Data drift detected on endpoint drifty" in web.on("/slack")[0]["json"]["text"]
        assert len(smtp.mail) == 1 and "drifty" in smtp.mail[0]["message"]["Subject"]
        assert len(actions.read_text().splitlines()) == 1
        _, record = daemon.get("/v1/alerts/drift-everywhere")
        assert record["active_entities"] == ["drifty"]  # grouped per (alert, endpoint)
        assert record["notifications"][0]["secret"] == "***"
        history = [
            e["action"] for e in daemon.get("/v1/alerts/drift-everywhere/events")[1]["events"]
        ]
        assert history.count("activated") == 1 and history.count("deduplicated") == 1

        daemon.stop()
        daemon = Daemon(
            short_tmp / "alerts", daemon.port, ["--config", str(cfg), *only_histogram]
        ).start()
        # still drifting, in the current window (older windows are closed: their events
        # would be late); it closes once the clock passes its end
        now_window = math.floor(time.time() / P) * P
        rows = rng.normal(3.0, 1, size=(200, 2))
        status, _ = daemon.post(
            "/v1/endpoints/drifty/events",
            {
                "inputs": rows.tolist(),
                "timestamps": [time.time()] * 200,
            },
        )
        assert status == 202
        daemon.wait_for(lambda: len(analyzed("drifty")) == 4, timeout=P + 30)
        assert analyzed("drifty")[-1]["start"] == time.strftime(
            "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now_window)
        )
        time.sleep(2)
        assert len(web.on("/hook")) == 1 and len(web.on("/slack")) == 1 and len(smtp.mail) == 1
        assert len(actions.read_text().splitlines()) == 1
        status, body = daemon.post("/v1/alerts/drift-everywhere/reset", None)
        assert (status, body["reset"]) == (200, 1)
        _, record = daemon.get("/v1/alerts/drift-everywhere")
        assert not record["active"]
    finally:
        daemon.stop()
        web.stop()
        smtp.stop()


def test_a_receiver_that_is_down_is_retried_and_analysis_goes_on(short_tmp):
    port = free_port()  # nothing listens here yet
    daemon = Daemon(
        short_tmp / "retry",
        free_port(),
        [
            "--set",
            "notifications.backoff_initial=0.2s",
            "--set",
            "notifications.backoff_max=0.5s",
            "--set",
            "notifications.max_attempts=100",
            "--set",
            "notifications.max_alerts=2",
            "--set",
            "applications.builtin=histogram-data-drift",
        ],
    ).start()
    receiver = None
    try:
        to_webhook = {
            "name": "to-webhook",
            "entities": {"kind": "model-endpoint-result", "ids": ["late-rx"]},
            "trigger": {"events": ["data-drift-detected"]},
            "notifications": [{"kind": "webhook", "url": f"http://127.0.0.1:{port}/hook"}],
        }
        status, _ = daemon.post("/v1/alerts", to_webhook)
        assert status == 201
        # notifications.max_alerts: a new name past it is refused, updates still work
        assert daemon.post("/v1/alerts", {**to_webhook, "name": "second"})[0] == 201
        status, body = daemon.post("/v1/alerts", {**to_webhook, "name": "third"})
        assert status == 409 and body["error"]["code"] == "limit_reached", body
        assert body["error"]["details"]["limit"] == 2
        assert daemon.post("/v1/alerts", {**to_webhook, "severity": "high"})[0] == 200
        assert daemon.delete("/v1/alerts/second")[0] == 200
        rng = np.random.default_rng(3)
        register(daemon, "late-rx", rng)
        first = (math.floor(time.time() / P) - 5) * P
        for w in range(3):
            post_window(daemon, "late-rx", first + w * P, rng, shift=3.0 if w == 0 else 0.0)

        def history(action):
            _, body = daemon.get("/v1/alerts/to-webhook/events")
            return [e for e in body["events"] if e["action"] == action]

        def results(uid):
            return daemon.get(f"/v1/endpoints/{uid}/results?name=general_drift")[1]["results"]

        daemon.wait_for(lambda: len(history("delivery_failed")) >= 2)
        daemon.wait_for(lambda: len(results("late-rx")) == 3)
        # while the receiver stays down, new traffic is analyzed as usual
        register(daemon, "bystander", rng)
        for w in range(2):
            post_window(daemon, "bystander", first + w * P, rng, shift=0.0)
        daemon.wait_for(lambda: len(results("bystander")) == 2)
        assert not history("delivered")
        receiver = HttpReceiver(port).start()
        daemon.wait_for(lambda: history("delivered"))
        time.sleep(1.0)
        assert len(receiver.on("/hook")) == 1
        assert "Cannot connect" in history("delivery_failed")[0]["error"]
    finally:
        daemon.stop()
        if receiver:
            receiver.stop()
