"""Webhook endpoints: who may be called (SSRF rules), how payloads are signed, when to retry.

- Only https URLs on public addresses: the host is resolved at registration and again at every
  delivery, and the request is pinned to an address that was checked (no DNS rebinding), without
  following redirects. Loopback is allowed only when a test setting says so. IPv6 forms that embed
  an IPv4 address (IPv4-mapped, NAT64, IPv4-compatible, 6to4, Teredo) are judged by that address.
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
RESOLVE_TIMEOUT_SECONDS = 5.0
FIRST_RETRY = timedelta(seconds=10)
LONGEST_WAIT = timedelta(hours=1)

Resolver = Callable[[str, int], Awaitable[list[str]]]


async def system_resolver(host: str, port: int) -> list[str]:
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, proto=6)
    return sorted({str(info[4][0]) for info in infos})


# Ranges whose IPv6 addresses carry an IPv4 address the packet is delivered to (see embedded_ipv4).
NAT64_WELL_KNOWN = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 §2.1
NAT64_LOCAL_USE = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215
IPV4_COMPATIBLE = ipaddress.IPv6Network("::/96")  # RFC 4291 §2.5.5.1, deprecated


def embedded_ipv4(ip: ipaddress.IPv6Address) -> tuple[ipaddress.IPv4Address, ...]:
    """The IPv4 addresses an IPv6 address leads to, when it is a form that embeds some; () otherwise.

    Traffic to these forms ends up at (or goes through) the embedded IPv4 host, so an endpoint on one
    of them is as internal as that IPv4 address: `::ffff:10.0.0.1`, `64:ff9b::a9fe:a9fe` (the cloud
    metadata service behind a NAT64) or `2002:7f00:1::` are all ways to name an internal host.

    - IPv4-mapped `::ffff:0:0/96` (RFC 4291 §2.5.5.2): the last 32 bits, reached by a dual-stack socket.
    - NAT64 well-known prefix `64:ff9b::/96` (RFC 6052): the last 32 bits, reached through the NAT64.
    - IPv4-compatible `::/96` (RFC 4291 §2.5.5.1, deprecated, still tunnelled by e.g. Linux's sit0):
      the last 32 bits. `::` and `::1` are not IPv4 forms: they are unspecified and loopback.
    - 6to4 `2002::/16` (RFC 3056, deprecated by RFC 7526): bits 16-47, the IPv4 of the 6to4 router the
      packet is tunnelled to. Judged like any other form rather than refused wholesale: a 6to4
      address of a public IPv4 reaches nothing a plain IPv4 endpoint could not.
    - Teredo `2001::/32` (RFC 4380): both the client (the last 32 bits, stored XOR 0xffffffff;
      `ipaddress` de-obfuscates it) and the server (bits 32-63). The client is where a Teredo relay
      delivers the packet, over UDP/IPv4; the server is where the relay sends its indirect bubble
      (RFC 4380 §5.4) before the client answers, so a relay would also send traffic there.

    The local-use NAT64 prefix `64:ff9b:1::/48` (RFC 8215) also embeds an IPv4 address, but at a
    prefix length (RFC 6052 §2.2: /48 to /96) only the local network knows, so it cannot be read here:
    `allowed_address` refuses that whole prefix instead (it is local by definition, never a public
    destination).
    """
    if ip.ipv4_mapped is not None:
        return (ip.ipv4_mapped,)
    if ip in NAT64_WELL_KNOWN or (ip in IPV4_COMPATIBLE and int(ip) > 1):
        return (ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF),)
    if ip.sixtofour is not None:
        return (ip.sixtofour,)
    if ip.teredo is not None:
        server, client = ip.teredo
        return (client, server)
    return ()


def _allowed_ip(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, *, allow_loopback: bool) -> bool:
    if ip.is_loopback:
        return allow_loopback
    # Reserved IPv6 is everything outside the allocated blocks (global unicast is 2000::/3 only): e.g.
    # the rest of 64:ff9b::/32, or the IPv4-translated ::ffff:0:0:0/96 that Python deems global.
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def allowed_address(address: str, *, allow_loopback: bool) -> bool:
    """Whether we may connect to this resolved address: the one rule, at subscription and at delivery.

    An IPv6 form that embeds an IPv4 address is judged by that address (all of them, for Teredo), with
    the rule of a plain address: loopback only when a test setting allows it, otherwise global
    unicast.
    """
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL_USE:
            return False
        embedded = embedded_ipv4(ip)
        if embedded:
            return all(_allowed_ip(v4, allow_loopback=allow_loopback) for v4 in embedded)
    return _allowed_ip(ip, allow_loopback=allow_loopback)


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
    # Plain http only to a loopback receiver, when the operator allows loopback (tests on one machine;
    # the API's own schema still asks for https).
    loopback_http = allow_loopback and parts.scheme == "http" and host in ("127.0.0.1", "::1", "localhost")
    if parts.scheme != "https" and not loopback_http:
        raise InvalidWebhookUrl("only https URLs are accepted")
    port = port or (443 if parts.scheme == "https" else 80)
    try:
        # Bounded: a subscription request must not hang on a slow resolver. A host name the IDNA codec
        # refuses (control characters, empty labels) is a bad URL, not a server error.
        addresses = await asyncio.wait_for(resolve(host, port), timeout=RESOLVE_TIMEOUT_SECONDS)
    except TimeoutError as exc:  # before OSError, of which it is a subclass
        raise InvalidWebhookUrl("the host did not resolve in time") from exc
    except (OSError, UnicodeError) as exc:
        raise InvalidWebhookUrl("the host does not resolve") from exc
    if not addresses:
        raise InvalidWebhookUrl("the host does not resolve")
    refused = [a for a in addresses if not allowed_address(a, allow_loopback=allow_loopback)]
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
