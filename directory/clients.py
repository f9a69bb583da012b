"""OAuth 2.0 clients of partner systems (client-credentials grant).

Secrets are random (256 bits), shown once, and stored only as argon2 hashes. Checking a secret for a
client that does not exist still costs one argon2 verification, so timing does not reveal which
client ids exist.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from psycopg import AsyncConnection
from pwdlib import PasswordHash
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.territories import TerritoryKind, unknown_codes

from .access import Role
from .errors import Conflict, InvalidInput, NotFound
from .models import ApiClient, Organisation
from .revisions import driver

_hasher = PasswordHash.recommended()
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(32))


@dataclass(frozen=True)
class IssuedSecret:
    client: ApiClient
    secret: str


async def _new_secret() -> tuple[str, str]:
    """A secret and its hash. Argon2 costs ~0.1 s of CPU by design: it runs in a worker thread, so the
    event loop keeps serving other requests meanwhile."""
    secret = secrets.token_urlsafe(32)
    return secret, await asyncio.to_thread(_hasher.hash, secret)


async def create(
    session: AsyncSession,
    *,
    name: str,
    role: Role,
    organisation_id: uuid.UUID | None = None,
    collectivite_code: str | None = None,
) -> IssuedSecret:
    if role is Role.partner:
        organisation = await session.get(Organisation, organisation_id) if organisation_id else None
        if organisation is None or organisation.deactivated_at is not None:
            raise InvalidInput("organisation_id", "a partner client needs an active organisation")
    if role is Role.department and (
        not collectivite_code
        or await unknown_codes(await driver(session), TerritoryKind.collectivite, [collectivite_code])
    ):
        raise InvalidInput("collectivite_code", "a department client needs an existing collectivité")
    secret, hashed = await _new_secret()
    client = ApiClient(
        name=name,
        role=role,
        organisation_id=organisation_id if role is Role.partner else None,
        collectivite_code=collectivite_code if role is Role.department else None,
        secret_hash=hashed,
    )
    session.add(client)
    await session.flush()
    return IssuedSecret(client, secret)


async def authenticate(session: AsyncSession, client_id: uuid.UUID, secret: str) -> ApiClient | None:
    """The active client these credentials belong to, or None (unknown, wrong secret, revoked)."""
    client = await session.get(ApiClient, client_id)
    valid = await asyncio.to_thread(_hasher.verify, secret, client.secret_hash if client else _DUMMY_HASH)
    if client is None or not valid or client.revoked_at is not None:
        return None
    client.last_used_at = datetime.now(UTC)
    await session.flush()
    return client


async def list_(session: AsyncSession, *, organisation_id: uuid.UUID | None = None) -> list[ApiClient]:
    statement = select(ApiClient).order_by(ApiClient.created_at, ApiClient.id)  # type: ignore[arg-type]
    if organisation_id is not None:
        statement = statement.where(ApiClient.organisation_id == organisation_id)
    return list((await session.exec(statement)).all())


async def get(session: AsyncSession, client_id: uuid.UUID) -> ApiClient:
    client = await session.get(ApiClient, client_id)
    if client is None:
        raise NotFound("no such client")
    return client


async def rotate(session: AsyncSession, client_id: uuid.UUID) -> IssuedSecret:
    """A new secret; the old one stops working at once. Revoked clients stay revoked."""
    client = await get(session, client_id)
    if client.revoked_at is not None:
        raise Conflict("this client is revoked: create a new one")
    secret, client.secret_hash = await _new_secret()
    client.rotated_at = datetime.now(UTC)
    await session.flush()
    return IssuedSecret(client, secret)


async def revoke(session: AsyncSession, client_id: uuid.UUID) -> ApiClient:
    client = await get(session, client_id)
    if client.revoked_at is None:
        client.revoked_at = datetime.now(UTC)
        await session.flush()
    return client


async def is_active(conn: AsyncConnection, client_id: uuid.UUID) -> bool:
    """Whether a client still exists unrevoked: writes check it on every request, so a revoked
    client's unexpired tokens stop writing at once."""
    row = await (
        await conn.execute("SELECT revoked_at IS NULL FROM api_client WHERE id = %(id)s", {"id": client_id})
    ).fetchone()
    return bool(row and row[0])
