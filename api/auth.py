"""Authentication and the role policy every /v1 route must declare (deny by default).

A route states who may call it with `Allow(Role.x, ...)`: the dependency authenticates the bearer
token and rejects other roles with 403. `app.assert_policies` refuses to build an app where a /v1
route lacks one, and a test enumerates the routes against a checked-in table.
"""

import dataclasses
import uuid
from typing import Annotated, Any

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from psycopg import AsyncConnection
from starlette.datastructures import Headers

from directory import clients, identity_bindings
from directory.access import Principal, Role
from directory.seeding import HOTLINE_SEED_KEY

from .db import ReaderDep
from .errors import ApiError, IdentityNotBound, IdentityProviderUnavailable, RoleNotAllowed, Unauthenticated
from .oidc import ExternalIdentity, OidcVerifier, ProviderUnavailable
from .tokens import InvalidToken

# Declares the scheme in OpenAPI (the /docs "Authorize" button); parsing is ours, below, because it
# must refuse duplicated headers and say why a token was refused.
_bearer_scheme = HTTPBearer(auto_error=False, bearerFormat="JWT")


def _bearer_token(headers: Headers) -> str:
    values = headers.getlist("authorization")
    if not values:
        raise Unauthenticated("a bearer token is required", token_presented=False)
    if len(values) > 1:
        raise Unauthenticated("send exactly one Authorization header")
    scheme, _, token = values[0].partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthenticated("the Authorization header must be 'Bearer <token>'")
    return token.strip()


async def verify_bearer(state: Any, headers: Headers) -> Principal | ExternalIdentity:
    """Who a request's bearer token says the caller is — a principal of our own tokens, or an identity
    an outside provider vouches for (`state.oidc`, api/oidc.py) — or Unauthenticated saying why not."""
    token = _bearer_token(headers)
    oidc: OidcVerifier | None = getattr(state, "oidc", None)
    try:
        if oidc is not None and oidc.providers and oidc.owns(_unverified_issuer(token)):
            return await oidc.verify(token)
        return state.tokens.verify(token)
    except InvalidToken as exc:
        raise Unauthenticated(str(exc)) from exc
    except ProviderUnavailable as exc:
        raise IdentityProviderUnavailable(str(exc)) from exc


def _unverified_issuer(token: str) -> object:
    """The `iss` a token claims, to choose who verifies it (never trusted beyond that)."""
    try:
        return jwt.decode(token, options={"verify_signature": False}).get("iss")
    except jwt.PyJWTError:
        return None


# The request-state key under which `api.middleware.Authentication` leaves its verdict (a Principal,
# an ExternalIdentity, or the error to answer), so that a token is verified once per request.
AUTHENTICATION = "authentication"


def authenticate(request: Request) -> Principal | ExternalIdentity:
    verdict = request.scope.get("state", {}).get(AUTHENTICATION)
    if isinstance(verdict, ApiError):
        raise verdict
    if isinstance(verdict, Principal | ExternalIdentity):
        return verdict
    raise Unauthenticated("the request was not authenticated")  # the middleware runs before every route


async def bound_principal(conn: AsyncConnection, identity: ExternalIdentity) -> Principal:
    """The principal an outside identity acts as: the one grant its claims' bindings give
    (directory/identity_bindings.py). None, or several that disagree, is a 403 that says so."""
    found = await identity_bindings.grants(conn, identity.issuer, identity.claims)
    if not found:
        raise IdentityNotBound(
            "your identity provider vouches for you, but no Maillage binding names your "
            f"{' or '.join(identity.claims)}: ask an administrator to bind it"
        )
    if len(found) > 1:
        raise IdentityNotBound(
            f"your {' or '.join(identity.claims)} name several Maillage bindings that disagree: "
            "ask an administrator to keep one"
        )
    (grant,) = found
    return Principal(
        subject=identity.subject,
        role=grant.role,
        organisation_id=grant.organisation_id,
        collectivite_code=grant.collectivite_code,
        issuer=identity.issuer,
    )


async def hotline_id(request: Request, conn: AsyncConnection) -> uuid.UUID:
    """The 119 unit's organisation, which specialists act for (looked up once per process)."""
    cached = getattr(request.app.state, "hotline_id", None)
    if cached is None:
        row = await (
            await conn.execute("SELECT id FROM organisation WHERE seed_key = %s", (HOTLINE_SEED_KEY,))
        ).fetchone()
        if row is None:
            raise RuntimeError("the 119 unit's organisation is missing: run `maillage seed`")
        cached = request.app.state.hotline_id = uuid.UUID(str(row[0]))
    return uuid.UUID(str(cached))


class Allow:
    """Dependency: the authenticated principal, provided its role is one of `roles`, with the
    organisation it acts for resolved (specialists act for the 119 unit)."""

    def __init__(self, *roles: Role) -> None:
        if not roles:
            raise ValueError("a policy names at least one role")
        self.roles = frozenset(roles)

    async def __call__(
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        conn: ReaderDep,
    ) -> Principal:
        verdict = authenticate(request)
        if isinstance(verdict, ExternalIdentity):
            request.state.identity = verdict  # journalled as who it is, should no binding name it
            verdict = await bound_principal(conn, verdict)
        principal = request.state.principal = verdict
        if principal.role not in self.roles:
            raise RoleNotAllowed(f"the {principal.role} role may not call this operation")
        if principal.role is Role.specialist:
            principal = dataclasses.replace(principal, organisation_id=await hotline_id(request, conn))
        request.state.principal = principal  # as resolved: what api/scoping.py checks against
        return principal

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(self.roles))})"


class AllowWrites(Allow):
    """A policy for listing writes: the roles, plus a per-subject rate limit, plus a live check that
    an API client has not been revoked since its token was issued."""

    async def __call__(
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        conn: ReaderDep,
    ) -> Principal:
        principal = await super().__call__(request, _, conn)
        if principal.client_id is not None and not await clients.is_active(conn, principal.client_id):
            raise Unauthenticated("this API client has been revoked")
        await request.app.state.write_limiter.hit(conn, principal.key)
        return principal


class Public:
    """Marks a deliberately unauthenticated /v1 route (the OAuth token endpoint), so the deny-by-default
    check can tell it from a forgotten policy."""

    roles: frozenset[str] = frozenset()

    async def __call__(self) -> None:
        return None


EVERY_ROLE = tuple(Role)
AnyRole = Annotated[Principal, Depends(Allow(*EVERY_ROLE))]
