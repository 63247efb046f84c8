"""Every channel against a real receiver on 127.0.0.1, and the outbox's retries."""

import asyncio
import hashlib
import hmac
import json
import ssl
import subprocess
import sys
import time

import aiohttp
import pytest

from modelmon_daemon.alerts.channels import SIGNATURE_HEADER, DeliveryError, send
from modelmon_daemon.server.delivery import OutboxDelivery, StoreOutbox
from modelmon_daemon.storage.lmdb_store import LmdbStore
from tests.ports import free_port
from tests.receivers import HttpReceiver, SmtpReceiver


def entry(channel):
    return {
        "channel": channel,
        "subject": "[modelmon] high: drift",
        "text": "Data drift detected",
        "payload": {
            "alert": "drift",
            "event": {"kind": "data-drift-detected", "endpoint_id": "ep"},
        },
        "alert": "drift",
        "entity": "ep.a.result.x",
        "attempts": 0,
        "next_at": 0.0,
        "seq": 1,
    }


@pytest.fixture
def http_receiver():
    receiver = HttpReceiver().start()
    yield receiver
    receiver.stop()


async def test_webhook_posts_json_with_hmac_signature_and_headers(http_receiver):
    channel = {
        "kind": "webhook",
        "url": http_receiver.url + "/hook",
        "secret": "k3y",
        "headers": {"X-Team": "ml"},
    }
    async with aiohttp.ClientSession() as session:
        await send(entry(channel), session)
    (post,) = http_receiver.on("/hook")
    assert post["json"]["message"] == "Data drift detected"
    assert post["json"]["event"]["kind"] == "data-drift-detected"
    expected = "sha256=" + hmac.new(b"k3y", post["body"], hashlib.sha256).hexdigest()
    assert post["headers"][SIGNATURE_HEADER] == expected
    assert post["headers"]["X-Team"] == "ml"


async def test_webhook_override_body_is_sent_instead_of_the_event(http_receiver):
    """MLRun's webhook `override_body`."""
    channel = {
        "kind": "webhook",
        "url": http_receiver.url + "/override",
        "override_body": {"text": "drift!"},
        "verify_ssl": False,
    }
    async with aiohttp.ClientSession() as session:
        await send(entry(channel), session)
    (post,) = http_receiver.on("/override")
    assert post["json"] == {"text": "drift!"}


async def test_slack_gets_slacks_message_format(http_receiver):
    async with aiohttp.ClientSession() as session:
        await send(entry({"kind": "slack", "webhook_url": http_receiver.url + "/slack"}), session)
    (post,) = http_receiver.on("/slack")
    assert post["json"] == {"text": "Data drift detected"}


async def test_email_over_smtp():
    smtp = SmtpReceiver().start()
    try:
        channel = {
            "kind": "email",
            "smtp_host": "127.0.0.1",
            "smtp_port": smtp.port,
            "from": "modelmon@example.com",
            "to": ["oncall@example.com"],
        }
        async with aiohttp.ClientSession() as session:
            await send(entry(channel), session)
        (mail,) = smtp.mail
        assert mail["to"] == ["oncall@example.com"]
        assert mail["message"]["Subject"] == "[modelmon] high: drift"
        assert "Data drift detected" in mail["message"].get_payload()
    finally:
        smtp.stop()


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1 (openssl)."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return key, cert


async def test_email_with_starttls_and_login(certificate):
    key, cert = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    smtp = SmtpReceiver(tls_context=server_tls, login=("mm", "pw")).start()
    base = {
        "kind": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "from": "mm@example.com",
        "to": ["ops@example.com"],
        "starttls": True,
        "ca_file": str(cert),
        "username": "mm",
    }
    try:
        async with aiohttp.ClientSession() as session:
            without_login = {k: v for k, v in base.items() if k != "username"}
            with pytest.raises(DeliveryError, match="530"):  # the server requires AUTH
                await send(entry(without_login), session)
            await send(entry({**base, "password": "pw"}), session)
        assert len(smtp.mail) == 1 and smtp.mail[0]["to"] == ["ops@example.com"]
    finally:
        smtp.stop()


async def test_command_gets_the_event_on_stdin(tmp_path):
    out = tmp_path / "event.json"
    script = f"import sys; open({str(out)!r}, 'w').write(sys.stdin.read())"
    async with aiohttp.ClientSession() as session:
        await send(entry({"kind": "command", "argv": [sys.executable, "-c", script]}), session)
    assert json.loads(out.read_text())["event"]["endpoint_id"] == "ep"


async def test_command_timeout_and_failure_raise():
    async with aiohttp.ClientSession() as session:
        with pytest.raises(DeliveryError, match="timed out"):
            await send(
                entry(
                    {
                        "kind": "command",
                        "argv": [sys.executable, "-c", "import time; time.sleep(5)"],
                        "timeout": 0.3,
                    }
                ),
                session,
            )
        with pytest.raises(DeliveryError, match="exited 3"):
            await send(
                entry({"kind": "command", "argv": [sys.executable, "-c", "raise SystemExit(3)"]}),
                session,
            )


async def test_outbox_retries_a_receiver_that_is_down_until_it_is_up(tmp_path):
    store = LmdbStore(tmp_path, 64 * 1024**2)
    port = free_port()
    with store.env.begin(write=True) as txn:
        store._outbox_put(
            txn, {**entry({"kind": "webhook", "url": f"http://127.0.0.1:{port}/h"}), "seq": None}
        )
    delivery = OutboxDelivery(
        StoreOutbox(store),
        max_attempts=10,
        backoff_initial=0.05,
        backoff_max=0.2,
        poll_interval=0.02,
        attempt_timeout=2,
    )
    task = asyncio.get_running_loop().create_task(delivery.run())
    try:
        deadline = time.time() + 10
        while delivery.failed_attempts < 2:
            assert time.time() < deadline
            await asyncio.sleep(0.02)
        receiver = HttpReceiver(port).start()
        try:
            while store.outbox():
                assert time.time() < deadline
                await asyncio.sleep(0.02)
            assert len(receiver.on("/h")) == 1
        finally:
            receiver.stop()
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    actions = [h["action"] for h in store.alert_history("drift")]
    assert actions.count("delivery_failed") >= 2 and actions[-1] == "delivered"


async def test_outbox_gives_up_after_max_attempts(tmp_path, http_receiver):
    store = LmdbStore(tmp_path, 64 * 1024**2)
    http_receiver.fail_with = 500
    with store.env.begin(write=True) as txn:
        store._outbox_put(
            txn, {**entry({"kind": "slack", "webhook_url": http_receiver.url + "/s"}), "seq": None}
        )
    delivery = OutboxDelivery(
        StoreOutbox(store),
        max_attempts=3,
        backoff_initial=0.01,
        backoff_max=0.01,
        poll_interval=0.01,
    )
    task = asyncio.get_running_loop().create_task(delivery.run())
    deadline = time.time() + 10
    while store.outbox():
        assert time.time() < deadline
        await asyncio.sleep(0.02)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    history = store.alert_history("drift")
    assert [h["action"] for h in history] == ["delivery_failed", "delivery_failed", "gave_up"]
    assert "500" in history[-1]["error"]
