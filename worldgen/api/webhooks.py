"""Sending webhooks, following the Standard Webhooks specification.

Each delivery is a POST of `{"type": "world.<status>", "data": <the world JSON at that change>}`
with `webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`, keyed with the secret `whsec_<base64>`: the world's API key's own (a
key made with a default webhook URL) or else WORLDGEN_WEBHOOK_SECRET. A 2xx answer delivers it;
anything else is retried with exponential backoff (from WORLDGEN_WEBHOOK_BACKOFF_SECONDS,
doubling, at most an hour) for WORLDGEN_WEBHOOK_RETRY_HOURS.
Targets that resolve to loopback, private, link-local or otherwise internal addresses are
refused (SSRF) unless WORLDGEN_WEBHOOK_ALLOW_PRIVATE=1: at submission and again at each send.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import socket
import threading
import time
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx

from worldgen.api.schemas import JobOut
from worldgen.config import Settings
from worldgen.jobs import webhooks
from worldgen.jobs.api_keys import webhook_secret
from worldgen.jobs.state import JobStatus
from worldgen.jobs.store import Job, JobStore, utcnow

log = logging.getLogger("worldgen.webhooks")

SECRET_PREFIX = "whsec_"
LEASE = timedelta(seconds=60)
MAX_DELAY_SECONDS = 3600.0


def from_snapshot(data: dict[str, Any]) -> Job:
    """The Job a delivery holds (`jobs.webhooks.snapshot`): the world as it was at that change."""
    values = dict(data)
    values["status"] = JobStatus(values["status"])
    for field in dataclasses.fields(Job):
        if isinstance(values.get(field.name), str) and field.name.endswith("_at"):
            values[field.name] = datetime.fromisoformat(values[field.name])
    return Job(**values)


def secret_key(secret: str) -> bytes:
    if not secret.startswith(SECRET_PREFIX):
        raise ValueError("a webhook secret looks like whsec_<base64>")
    return base64.b64decode(secret[len(SECRET_PREFIX) :])


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def target_problem(url: str, allow_private: bool) -> str | None:
    """Why `url` may not receive webhooks, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the webhook URL must be http(s)://host/..."
    if allow_private:
        return None
    try:
        addresses = {info[4][0] for info in socket.getaddrinfo(parts.hostname, parts.port or 443)}
    except OSError:
        return f"the webhook host {parts.hostname!r} does not resolve"
    for address in addresses:
        ip = ipaddress.ip_address(str(address).split("%")[0])
        if not ip.is_global or ip.is_multicast:
            return f"the webhook host {parts.hostname!r} is an internal address ({ip}); refused"
    return None


def retry_delay(attempts: int, base: float) -> float:
    return min(MAX_DELAY_SECONDS, base * 2**attempts)


class WebhookSender:
    """Sends due deliveries from the job store, on a thread of the API process."""

    def __init__(self, store: JobStore, settings: Settings, client: httpx.Client | None = None) -> None:
        self.store, self.settings = store, settings
        self.client = client or httpx.Client(timeout=10, follow_redirects=False)

    def run(self, stop: threading.Event, interval: float = 0.5) -> None:
        while not stop.wait(interval):
            try:
                self.send_due()
            except Exception:
                log.exception("webhook sending failed; continuing")

    def send_due(self) -> int:
        now = utcnow()
        due = webhooks.claim_due(self.store, now, LEASE)
        for delivery in due:
            self.send(delivery)
        return len(due)

    def send(self, delivery: webhooks.Delivery) -> None:
        job = from_snapshot(delivery.payload)
        secret = webhook_secret(self.store, job.owner_key_id) or self.settings.webhook_secret  # the key's own first
        now = utcnow()
        data = JobOut.of(job).model_dump(mode="json")
        body = json.dumps({"type": delivery.event_type, "data": data}, separators=(",", ":")).encode()
        status, error = None, None
        problem = target_problem(delivery.url, self.settings.webhook_allow_private)
        if secret is None:
            error = "WORLDGEN_WEBHOOK_SECRET is not set"
        elif problem is not None:
            error = problem
        else:
            timestamp = int(time.time())
            message_id = f"msg_{delivery.id}"
            headers = {
                "content-type": "application/json",
                "webhook-id": message_id,
                "webhook-timestamp": str(timestamp),
                "webhook-signature": sign(secret, message_id, timestamp, body),
                "user-agent": "worldgen-webhooks",
            }
            try:
                status = self.client.post(delivery.url, content=body, headers=headers).status_code
            except httpx.HTTPError as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        ok = status is not None and 200 <= status < 300
        if not ok and error is None:
            error = f"the receiver answered {status}"
        retry_at: datetime | None = None
        if not ok:
            candidate = now + timedelta(seconds=retry_delay(delivery.attempts, self.settings.webhook_backoff_seconds))
            if candidate - delivery.created_at <= timedelta(hours=self.settings.webhook_retry_hours):
                retry_at = candidate
        webhooks.record_attempt(self.store, delivery.id, now=now, ok=ok, status_code=status, error=error,
                                retry_at=retry_at)  # fmt: skip
