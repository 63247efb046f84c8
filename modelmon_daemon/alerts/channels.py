"""Delivery of one notification over its channel. Each raises on failure; the caller
retries with backoff. Adapters stay tiny: the message is rendered before."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import ssl
from email.message import EmailMessage
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import aiosmtplib

SIGNATURE_HEADER = "X-Modelmon-Signature"


class DeliveryError(RuntimeError):
    pass


def webhook_body(entry: dict[str, Any]) -> bytes:
    return json.dumps({**entry["payload"], "message": entry["text"]}, sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    body: bytes,
    headers: dict[str, str],
    verify_ssl: bool = True,
) -> None:
    async with session.post(url, data=body, headers=headers, ssl=verify_ssl) as resp:
        if resp.status >= 300:
            # the status only: a reply body (of an internal service, say) is never stored
            raise DeliveryError(f"{_origin(url)} answered HTTP {resp.status}")


def _origin(url: str) -> str:
    """scheme://host:port of a URL: paths and queries may carry secrets (Slack's do)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rsplit('@', 1)[-1]}"


SMTP_TIMEOUT = 20.0


async def _send_email(channel: dict[str, Any], subject: str, text: str) -> None:
    """aiosmtplib on the event loop with a timeout per step: a hanging mail server costs
    one task, never a thread another part of the daemon waits for."""
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = channel["from"]
    msg["To"] = ", ".join(channel["to"])
    msg.set_content(text)
    context = ssl.create_default_context(cafile=channel.get("ca_file") or None)
    await aiosmtplib.send(
        msg,
        hostname=channel["smtp_host"],
        port=int(channel["smtp_port"]),
        use_tls=bool(channel.get("ssl")),
        start_tls=bool(channel.get("starttls")),
        tls_context=context,
        username=channel.get("username") or None,
        password=(channel.get("password") or "") if channel.get("username") else None,
        timeout=SMTP_TIMEOUT,
    )


async def send(entry: dict[str, Any], session: aiohttp.ClientSession) -> None:
    channel = entry["channel"]
    kind = channel["kind"]
    if kind == "webhook":
        override = channel.get("override_body")
        if override is None:
            body = webhook_body(entry)
        elif isinstance(override, str):
            body = override.encode()
        else:
            body = json.dumps(override, sort_keys=True).encode()
        headers = {"Content-Type": "application/json", **(channel.get("headers") or {})}
        if channel.get("secret"):
            headers[SIGNATURE_HEADER] = signature(channel["secret"], body)
        verify = channel.get("verify_ssl", True)
        await _post(session, channel["url"], body, headers, verify)
    elif kind == "slack":
        body = json.dumps({"text": entry.get("slack_text") or entry["text"]}).encode()
        await _post(session, channel["webhook_url"], body, {"Content-Type": "application/json"})
    elif kind == "email":
        try:
            await _send_email(channel, entry["subject"], entry["text"])
        except (OSError, aiosmtplib.SMTPException) as exc:
            raise DeliveryError(
                f"smtp {channel['smtp_host']}:{channel['smtp_port']}: {type(exc).__name__}"
                + (f" {exc.code}" if isinstance(exc, aiosmtplib.SMTPResponseException) else "")
            ) from None
    elif kind == "command":
        await _run_command(channel, json.dumps({**entry["payload"], "message": entry["text"]}))
    else:
        raise DeliveryError(f"unknown channel {kind!r}")


async def _run_command(channel: dict[str, Any], stdin: str) -> None:
    timeout = float(channel.get("timeout") or 60.0)
    try:
        proc = await asyncio.create_subprocess_exec(
            *channel["argv"],
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    except OSError as exc:
        raise DeliveryError(f"cannot run {channel['argv'][0]}: {exc}") from None
    try:
        _, err = await asyncio.wait_for(proc.communicate(stdin.encode()), timeout)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise DeliveryError(f"{channel['argv'][0]} timed out after {timeout:g}s") from None
    if proc.returncode != 0:
        raise DeliveryError(
            f"{channel['argv'][0]} exited {proc.returncode}: {err.decode(errors='replace')[:200]}"
        )
