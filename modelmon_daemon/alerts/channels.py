"""Delivery of one notification over its channel. Each raises on failure; the caller
retries with backoff. Adapters stay tiny: the message is rendered before."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import smtplib
import ssl
from concurrent.futures import Executor
from email.message import EmailMessage
from typing import Any

import aiohttp

SIGNATURE_HEADER = "X-Modelmon-Signature"


class DeliveryError(RuntimeError):
    pass


def webhook_body(entry: dict[str, Any]) -> bytes:
    return json.dumps({**entry["payload"], "message": entry["text"]}, sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def _post(
    session: aiohttp.ClientSession, url: str, body: bytes, headers: dict[str, str]
) -> None:
    async with session.post(url, data=body, headers=headers) as resp:
        if resp.status >= 300:
            text = (await resp.text())[:200]
            raise DeliveryError(f"{url} answered {resp.status}: {text}")


def _send_email(channel: dict[str, Any], subject: str, text: str) -> None:
    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = channel["from"]
    msg["To"] = ", ".join(channel["to"])
    msg.set_content(text)
    host, port = channel["smtp_host"], int(channel["smtp_port"])
    context = ssl.create_default_context(cafile=channel.get("ca_file") or None)
    smtp: smtplib.SMTP
    if channel.get("ssl"):
        smtp = smtplib.SMTP_SSL(host, port, timeout=20, context=context)
    else:
        smtp = smtplib.SMTP(host, port, timeout=20)
    with smtp:
        if channel.get("starttls"):
            smtp.starttls(context=context)
        if channel.get("username"):
            smtp.login(channel["username"], channel.get("password") or "")
        smtp.send_message(msg)


async def send(
    entry: dict[str, Any], session: aiohttp.ClientSession, executor: Executor | None = None
) -> None:
    channel = entry["channel"]
    kind = channel["kind"]
    if kind == "webhook":
        body = webhook_body(entry)
        headers = {"Content-Type": "application/json", **(channel.get("headers") or {})}
        if channel.get("secret"):
            headers[SIGNATURE_HEADER] = signature(channel["secret"], body)
        await _post(session, channel["url"], body, headers)
    elif kind == "slack":
        body = json.dumps({"text": entry["text"]}).encode()
        await _post(session, channel["webhook_url"], body, {"Content-Type": "application/json"})
    elif kind == "email":
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(
                executor, _send_email, channel, entry["subject"], entry["text"]
            )
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(
                f"smtp {channel['smtp_host']}:{channel['smtp_port']}: {exc!r}"
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
