"""Pure ASGI middleware (no BaseHTTPMiddleware: it costs a task per request on the hot path)."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

import structlog
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .auth import AUTHENTICATION, verify_bearer
from .errors import IdentityProviderUnavailable, Unauthenticated, problem_response
from .links import bind_base_url
from .logs import logged_path
from .metrics import observe

access_log = structlog.get_logger("maillage.access")
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class BodySizeLimit:
    """413 for bodies over the cap (OWASP API4): refused on Content-Length before reading, and
    counted while streaming for chunked bodies. Starlette has no limit of its own."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope["headers"]:
            if name == b"content-length" and (not value.isdigit() or int(value) > self.max_bytes):
                await self._refuse(scope, receive, send)
                return
        received = 0
        refused = False

        async def limited_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Answer now and tell the app the client went away; whatever it sends after is dropped.
                    refused = True
                    await self._refuse(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def guarded_send(message: Message) -> None:
            if not refused:
                await send(message)

        await self.app(scope, limited_receive, guarded_send)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, "payload_too_large", f"the body must not exceed {self.max_bytes} bytes")
        await response(scope, receive, send)


class RequestContext:
    """A request id on every response and log line, one access-log line and the metrics (api/metrics.py,
    by route template) per request.

    The access log records the path but never the query string: search and resolve parameters can
    be a child's whereabouts (DESIGN §3); nor the path of a map tile, whose z/x/y say where someone
    looked (its route template instead: api.logs.logged_path). /v1 and /ogc answers are marked
    `Cache-Control: no-store`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                candidate = value.decode("latin-1")
                request_id = candidate if _REQUEST_ID.match(candidate) else None
        request_id = request_id or os.urandom(16).hex()
        scope.setdefault("state", {})["request_id"] = request_id
        started = time.perf_counter()
        status = 500
        # Every answer behind a token is about a child or scoped to its caller, or open data that a
        # token guards: no shared or browser cache keeps it.
        private = needs_token(scope["path"])

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
                if private and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        structlog.contextvars.bind_contextvars(request_id=request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None)
            observe(scope["method"], template, status, elapsed)
            access_log.info(
                "request",
                method=scope["method"],
                path=logged_path(scope),
                route=template,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.clear_contextvars()


class PublicOrigin:
    """Requests must name this API's own host; links are built from the configured base URL.

    The Host header is the client's to write: a link built from it (a `next` link, a `Location`)
    would send the next client wherever the previous request said (cache poisoning, links in shared
    pages), and a DNS-rebinding page would reach a local API under its own name. So the accepted
    hosts are a closed list derived from settings: the host of `public_base_url` (case-insensitive,
    with or without its port when it is the scheme's default), its loopback aliases when it is a
    loopback address (127.0.0.1, localhost, [::1] on the same port: local runs), and `allowed_hosts`
    (without a port: any port). Anything else, a missing or repeated Host included, is a 400 problem
    `unknown_host`. X-Forwarded-Host is never read.

    The liveness and readiness probes are exempt: orchestrators and load balancers probe a process by
    its address, and these answers carry no link and no data.

    For accepted requests the base URL is bound for `api.links.absolute`, which builds every link.
    """

    EXEMPT_PATHS = frozenset({"/healthz", "/readyz"})

    def __init__(self, app: ASGIApp, *, base_url: str, allowed_hosts: Iterable[str] = ()) -> None:
        self.app = app
        self.base_url = base_url
        parts = urlsplit(base_url)
        own = _host_and_port(parts.netloc, parts.scheme)
        if own is None:
            raise ValueError(f"public_base_url {base_url!r} has no plain host[:port]")
        self._default_port = _DEFAULT_PORTS[parts.scheme]
        self._exact: set[tuple[str, int | None]] = {own}
        if own[0] in _LOOPBACK:
            self._exact.update((alias, own[1]) for alias in _LOOPBACK)
        self._any_port: set[str] = set()
        for entry in allowed_hosts:
            parsed = _host_and_port(entry.strip(), None)
            if parsed is None:
                raise ValueError(f"allowed_hosts: {entry!r} is not host[:port]")
            if parsed[1] is None:
                self._any_port.add(parsed[0])
            else:
                self._exact.add(parsed)

    def accepts(self, host_header: str) -> bool:
        parsed = _host_and_port(host_header, None)
        if parsed is None:
            return False
        name, port = parsed
        return name in self._any_port or (name, port if port is not None else self._default_port) in self._exact

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        hosts = [value for name, value in scope["headers"] if name == b"host"]
        if scope["path"] not in self.EXEMPT_PATHS and (len(hosts) != 1 or not self.accepts(hosts[0].decode("latin-1"))):
            response = problem_response(400, "unknown_host", "this API does not answer for this host")
            await response(scope, receive, send)
            return
        with bind_base_url(self.base_url):
            await self.app(scope, receive, send)


_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")
_HOST = re.compile(r"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>[a-z0-9._-]+))(?::(?P<port>[0-9]{1,5}))?")


def _host_and_port(value: str, scheme: str | None) -> tuple[str, int | None] | None:
    """("host", port) of a Host header or authority, lower-cased; the scheme's default port when
    `scheme` is given and the port is absent; None when it is not a plain host[:port]."""
    match = _HOST.fullmatch(value.lower())
    if match is None:
        return None
    host = match["ipv6"] or match["name"]
    port = int(match["port"]) if match["port"] else (_DEFAULT_PORTS[scheme] if scheme else None)
    if port is not None and not 0 < port < 65536:
        return None
    return host, port


# The APIs whose every operation needs a bearer token (unless declared `Public`): the API itself and
# its OGC API – Features view for GIS clients.
PROTECTED_PREFIXES = ("/v1", "/ogc")


def needs_token(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in PROTECTED_PREFIXES)


class Authentication:
    """Authentication first (DESIGN §3): without a valid bearer token, every /v1 or /ogc operation that
    is not declared `Public` answers 401 — before 400, 413, 422 or 428, and without parsing the body.

    FastAPI reads and decodes the JSON body before it runs any dependency, and runs the endpoint's
    dependencies in parameter order (If-Match before the principal, say), so the route's policy
    cannot guarantee this alone. The token is therefore verified here, once, before routing; the
    verdict is kept in the request state, where `api.auth.authenticate` reads it. When it fails, the
    request goes on with an empty body (Content-Length: 0; nothing of the caller's body is read) and
    the first dependency of every /v1 route (`api.app.authentication_first`, which FastAPI runs before
    the endpoint's own parameters) hands it to the route's policy, which answers the 401 — with its
    challenge, and journalled by `AuditedAllow` on case data exactly as before. Answering here instead
    would duplicate the policies' journal (action names, database connection) outside FastAPI.

    `is_public(method, path)` says which operations need no token (derived from the routes' policies).
    """

    def __init__(self, app: ASGIApp, *, is_public: Callable[[str, str], bool]) -> None:
        self.app = app
        self.is_public = is_public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not needs_token(path) or self.is_public(scope["method"], path):
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            state[AUTHENTICATION] = await verify_bearer(scope["app"].state, Headers(scope=scope))
        except (Unauthenticated, IdentityProviderUnavailable) as exc:
            state[AUTHENTICATION] = exc
            headers = [(k, v) for k, v in scope["headers"] if k not in (b"content-length", b"transfer-encoding")]
            # In place, not a copy: the router records the matched route in this scope, which the access
            # log and the metrics read (a refused tile is logged by its template, never its path).
            scope["headers"] = [*headers, (b"content-length", b"0")]
            receive = _no_body(receive)
        await self.app(scope, receive, send)


def _no_body(receive: Receive) -> Receive:
    """An empty request body; afterwards only what is not body (a disconnect) gets through."""
    given = False

    async def receive_nothing() -> Message:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": b"", "more_body": False}
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return message

    return receive_nothing
