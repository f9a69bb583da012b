"""Webhook endpoints: who may be called (SSRF rules), how payloads are signed, when to retry.

- Only https URLs on public addresses: the host is resolved at registration and again at every
  delivery, and the request is pinned to an address that was checked (no DNS rebinding), without
  following redirects. Loopback is allowed only when a test setting says so.
- Signatures follow Standard Webhooks (webhook-id, webhook-timestamp, webhook-signature: HMAC-SHA256),
  made with the reference library. Secrets are stored encrypted with the server's key.
- Failed deliveries are retried with exponential backoff and jitter for 24 hours, then dead-lettered.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import random
import secrets
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from standardwebhooks.webhooks import Webhook

from .errors import InvalidWebhookUrl

EVENT_TYPES = frozenset(
    {
        "handoff.created",
        "handoff.transitioned",
        "handoff.overdue",
        "case.runaway_started",
        "listing.verification_due",
    }
)
RETRY_FOR = timedelta(hours=24)
FIRST_RETRY = timedelta(seconds=10)
LONGEST_WAIT = timedelta(hours=1)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=6)
    return sorted({str(info[4][0]) for info in infos})


def _allowed(address: str, *, allow_loopback: bool) -> bool:
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return allow_loopback
    return ip.is_global and not ip.is_multicast


async def check_url(url: str, *, resolve: Resolver, allow_loopback: bool) -> tuple[str, int, list[str]]:
    """(host, port, addresses) of an endpoint we may call; InvalidWebhookUrl otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidWebhookUrl("not a valid URL") from exc
    host = parts.hostname
    if not host:
        raise InvalidWebhookUrl("the URL needs a host")
    if parts.username or parts.password:
        raise InvalidWebhookUrl("credentials in the URL are not accepted: we sign every request instead")
    if parts.fragment:
        raise InvalidWebhookUrl("fragments are not accepted")
    loopback_http = allow_loopback and parts.scheme == "http" and host in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not loopback_http:
        raise InvalidWebhookUrl("only https URLs are accepted")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        addresses = await resolve(host, port)
    except OSError as exc:
        raise InvalidWebhookUrl("the host does not resolve") from exc
    if not addresses:
        raise InvalidWebhookUrl("the host does not resolve")
    refused = [a for a in addresses if not _allowed(a, allow_loopback=allow_loopback)]
    if refused:
        raise InvalidWebhookUrl("the host resolves to a private, loopback or reserved address")
    return host, port, addresses


def new_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


class SecretBox:
    """Encrypts webhook secrets at rest with the server's key (Fernet: AES-128-CBC + HMAC-SHA256)."""

    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(base64.urlsafe_b64encode(key[:32].ljust(32, b"\0")))

    def seal(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def open(self, sealed: str) -> str:
        return self._fernet.decrypt(sealed.encode()).decode()


def signed_headers(secret: str, *, message_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    return {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, timestamp, body),
        "content-type": "application/json",
    }


def next_attempt(attempts: int, *, now: datetime, rng: random.Random | None = None) -> datetime:
    """After the n-th failed attempt: 10 s, 20 s, 40 s… capped at an hour, each ±25 % (jitter keeps a
    recovering receiver from being hit by every retry at once)."""
    wait = min(FIRST_RETRY * (2 ** (attempts - 1)), LONGEST_WAIT)
    jitter = (rng or random).uniform(0.75, 1.25)
    return now + wait * jitter
