"""Journalisation of case data (CNIL): every read and write of cases, handoffs and pathway events —
denials included — leaves one audit row: who, role, organisation, action, object, when, outcome.

A successful write records its row in the write's own transaction (both commit or neither does); a
read, a refusal or a failure records it on an autocommit connection, so it survives the rollback.
The application's database role may insert audit rows but never change or delete them.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated, Any

import sqlalchemy as sa
import structlog
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from psycopg import AsyncConnection
from sqlmodel import Field, SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.access import Principal, Role
from geo.columns import created_at

from .auth import Allow, _bearer_scheme
from .db import ReaderDep
from .errors import IdentityNotBound, IdentityProviderUnavailable, RoleNotAllowed, Unauthenticated, status_for

log = structlog.get_logger("maillage.audit")


class AuditEvent(SQLModel, table=True):
    """Journalisation (CNIL): who read or wrote what case data, when, with which outcome. The
    application's database role may only insert and read these rows."""

    __tablename__ = "audit_event"
    __table_args__ = (sa.Index("ix_audit_event__at", "at"), sa.Index("ix_audit_event__case_id", "case_id"))

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    at: datetime = created_at()
    actor_subject: str = Field(max_length=200)
    actor_role: str | None = Field(default=None, max_length=32)
    # Who vouches for the subject: our own token issuer, or an outside OpenID provider (two providers
    # may use the same subject for two people).
    actor_issuer: str = Field(default="", max_length=300, sa_column_kwargs={"server_default": ""})
    actor_organisation_id: uuid.UUID | None = None
    action: str = Field(max_length=64)
    object_type: str = Field(max_length=32)
    object_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None
    outcome: str = Field(max_length=16)
    status_code: int = Field(sa_type=sa.SmallInteger)
    request_id: str | None = Field(default=None, max_length=64)


_INSERT = """INSERT INTO audit_event (actor_issuer, actor_subject, actor_role, actor_organisation_id, action,
                                      object_type, object_id, case_id, outcome, status_code, request_id)
             VALUES (%(actor_issuer)s, %(actor_subject)s, %(actor_role)s, %(actor_organisation_id)s, %(action)s,
                     %(object_type)s, %(object_id)s, %(case_id)s, %(outcome)s, %(status_code)s, %(request_id)s)"""


def _outcome(status: int) -> str:
    if status < 400:
        return "allowed"
    if status in (401, 403):
        return "denied"
    if status == 404:
        return "not_found"  # missing, or outside the caller's scope: the same to them, the same here
    if status in (409, 412, 428):
        return "conflict"
    if status == 429:
        return "rate_limited"
    return "invalid" if status < 500 else "error"


def _path_id(request: Request) -> uuid.UUID | None:
    for value in request.path_params.values():
        try:
            return uuid.UUID(str(value))
        except ValueError:
            continue
    return None


@dataclass
class Entry:
    request: Request
    principal: Principal | None
    action: str
    object_type: str
    object_id: uuid.UUID | None = None
    case_id: uuid.UUID | None = None
    recorded: bool = field(default=False)

    def row(self, status: int) -> dict[str, Any]:
        principal = self.principal
        # A provider's person whose claims no binding names has no role here, but is known all the same.
        identity = getattr(self.request.state, "identity", None) if principal is None else None
        return {
            "actor_issuer": principal.issuer if principal else getattr(identity, "issuer", ""),
            "actor_subject": principal.subject if principal else getattr(identity, "subject", "anonymous"),
            "actor_role": principal.role.value if principal else None,
            "actor_organisation_id": principal.organisation_id if principal else None,
            "action": self.action,
            "object_type": self.object_type,
            "object_id": self.object_id,
            "case_id": self.case_id,
            "outcome": _outcome(status),
            "status_code": status,
            "request_id": self.request.scope.get("state", {}).get("request_id"),
        }

    def in_transaction(self, session: AsyncSession, *, status: int = 200) -> None:
        """Record a successful write in the write's own transaction (call before committing)."""
        session.add(AuditEvent(**self.row(status)))
        self.recorded = True


async def record(conn: AsyncConnection, entry: Entry, status: int) -> None:
    try:
        await conn.execute(_INSERT, entry.row(status))
    except Exception:  # noqa: BLE001 - never hide the caller's own outcome behind an audit failure
        log.exception("audit_write_failed", action=entry.action)


@asynccontextmanager
async def trail(
    request: Request,
    conn: AsyncConnection,
    principal: Principal | None,
    *,
    action: str,
    object_type: str,
    object_id: uuid.UUID | None = None,
    case_id: uuid.UUID | None = None,
) -> AsyncIterator[Entry]:
    entry = Entry(request, principal, action, object_type, object_id or _path_id(request), case_id)
    try:
        yield entry
    except Exception as exc:
        await record(conn, entry, status_for(exc) or 500)
        raise
    if not entry.recorded:
        await record(conn, entry, 200)


class AuditedAllow(Allow):
    """A role policy that journals its refusals (and unauthenticated attempts) on case data."""

    def __init__(self, action: str, object_type: str, *roles: Role) -> None:
        super().__init__(*roles)
        self.action, self.object_type = action, object_type

    async def __call__(
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        conn: ReaderDep,
    ) -> Principal:
        principal = None
        request.state.audit = (self.action, self.object_type)  # refusals further on are journalled too
        try:
            return await super().__call__(request, _, conn)
        except (Unauthenticated, RoleNotAllowed, IdentityNotBound, IdentityProviderUnavailable) as exc:
            principal = getattr(request.state, "principal", None)
            entry = Entry(request, principal, self.action, self.object_type, _path_id(request))
            await record(conn, entry, status_for(exc) or 403)
            raise


async def journal_exact_reads(
    request: Request, conn: AsyncConnection, principal: Principal, location_ids: list[uuid.UUID]
) -> None:
    """Each safe house a specialist was shown exactly (need-to-know: they work the case of an open
    handoff to it) leaves a journal row, so the unit can tell who saw where a child is placed."""
    for location_id in location_ids:
        await record(conn, Entry(request, principal, "location.exact.read", "location", location_id), 200)
