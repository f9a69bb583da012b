"""Idempotency-Key for creations (draft-ietf-httpapi-idempotency-key-header): the same key with the same
body gets the first response again; with another body, a 422.

The key row is inserted in the creation's own transaction. A concurrent request with the same key
blocks on that insert until the first one commits, then finds the stored response and replays it —
so twenty simultaneous identical requests create one row and get twenty identical answers.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from fastapi import Request
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.access import Principal
from directory.errors import IdempotencyConflict
from geo.columns import created_at

from .errors import IdempotencyKeyRequired
from .headers import RequestHeader

KEY_SYNTAX = r"^[\x21-\x7e]{1,255}$"
_KEY = re.compile(KEY_SYNTAX)


class IdempotencyKey(SQLModel, table=True):
    """The first response to a keyed creation, replayed for the same principal, key and body."""

    __tablename__ = "idempotency_key"

    # A digest of the whole principal (issuer, subject, role, organisation, collectivité): a key is
    # never shared by two principals that happen to have the same subject.
    principal: str = Field(primary_key=True, max_length=64)
    key: str = Field(primary_key=True, max_length=255)
    fingerprint: str = Field(max_length=64)
    status_code: int | None = Field(default=None, sa_type=sa.SmallInteger)
    response: dict[str, Any] | None = Field(default=None, sa_column=sa.Column(JSONB))
    created_at: datetime = created_at()


def _principal(principal: Principal) -> str:
    return hashlib.sha256(principal.key.encode()).hexdigest()


async def _sql(session: AsyncSession, statement: str, params: dict[str, Any]) -> Any:
    return await (await session.connection()).execute(sa.text(statement), params)


@dataclass(frozen=True)
class Stored:
    status: int
    body: str
    headers: dict[str, str]


IDEMPOTENCY_KEY = RequestHeader(
    "Idempotency-Key",
    description="A key of your own (e.g. a UUID), 1 to 255 printable ASCII characters. Without it, or "
    "malformed, the creation is refused with a 400; the same key with the same body replays the first "
    "response, with another body it is a 422.",
    pattern=KEY_SYNTAX,
    max_length=255,
)


def key_of(key: str | None) -> str:
    """The Idempotency-Key sent (read by the `IDEMPOTENCY_KEY` dependency), or a 400."""
    if key is None:
        raise IdempotencyKeyRequired("send an Idempotency-Key header (e.g. a UUID) so a retry cannot create twice")
    if not _KEY.match(key):
        raise IdempotencyKeyRequired("the Idempotency-Key must be 1 to 255 printable ASCII characters")
    return key


def fingerprint(request: Request, body: dict[str, Any]) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{request.method} {request.url.path} {canonical}".encode()).hexdigest()


async def claim(session: AsyncSession, *, principal: Principal, key: str, fingerprint: str) -> Stored | None:
    """None: the key is ours, go ahead. Otherwise the response stored for it."""
    who = _principal(principal)
    inserted = (
        await _sql(
            session,
            """INSERT INTO idempotency_key (principal, key, fingerprint)
                    VALUES (:principal, :key, :fingerprint) ON CONFLICT DO NOTHING RETURNING 1""",
            {"principal": who, "key": key, "fingerprint": fingerprint},
        )
    ).first()
    if inserted is not None:
        return None
    row = (
        await _sql(
            session,
            """SELECT fingerprint, status_code, response FROM idempotency_key
                WHERE principal = :principal AND key = :key""",
            {"principal": who, "key": key},
        )
    ).first()
    assert row is not None, "the conflicting row committed before our insert returned"
    if row[0] != fingerprint:
        raise IdempotencyConflict("this Idempotency-Key was used for another request: use a new key")
    return Stored(status=row[1], body=row[2]["body"], headers=row[2]["headers"])


async def store(
    session: AsyncSession, *, principal: Principal, key: str, status: int, body: str, headers: dict[str, str]
) -> None:
    await _sql(
        session,
        """UPDATE idempotency_key SET status_code = :status, response = CAST(:response AS jsonb)
            WHERE principal = :principal AND key = :key""",
        {
            "principal": _principal(principal),
            "key": key,
            "status": status,
            "response": json.dumps({"body": body, "headers": headers}),
        },
    )
