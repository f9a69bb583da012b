"""Identity bindings: which people of an outside identity provider act in Maillage, as what.

The 119, the départements and the associations keep their staff in their own identity systems; no
directory of people is copied here. An administrator binds a value of one of a provider's claims (a
group such as "crip-93", a department code…) to a role and, for partners and départements, to the
organisation or collectivité it acts for. A token from that provider is then worth the one binding its
claims name: none is a refusal, and so are several that disagree (nobody gets the union of two
roles). Revoking a binding takes effect on the next request: bindings are read on every request.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from psycopg import AsyncConnection
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, SQLModel, select
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.columns import created_at, enum_column
from geo.territories import TerritoryKind, unknown_codes

from .access import Role
from .errors import Conflict, InvalidInput, NotFound
from .models import Organisation
from .revisions import driver
from .seeding import HOTLINE_SEED_KEY


class IdentityBinding(SQLModel, table=True):
    """A claim value of an identity provider, bound to a role (and an organisation or collectivité)."""

    __tablename__ = "identity_binding"
    __table_args__ = (
        sa.Index(
            "uq_identity_binding__active",
            "issuer",
            "claim",
            "value",
            unique=True,
            postgresql_where=sa.text("revoked_at IS NULL"),
        ),
        sa.CheckConstraint("(role = 'partner') = (organisation_id IS NOT NULL)", name="partner_organisation"),
        sa.CheckConstraint("(role = 'department') = (collectivite_code IS NOT NULL)", name="department_collectivite"),
    )

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    issuer: str = Field(max_length=300)
    claim: str = Field(max_length=100)
    value: str = Field(max_length=200)
    role: Role = enum_column(Role)
    organisation_id: uuid.UUID | None = Field(default=None, foreign_key="organisation.id", index=True)
    collectivite_code: str | None = Field(default=None, foreign_key="collectivite.code", max_length=4)
    created_at: datetime = created_at()
    created_by: str = Field(max_length=300)
    revoked_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


@dataclass(frozen=True)
class Grant:
    """What a binding gives: a role, and whom it acts for."""

    role: Role
    organisation_id: uuid.UUID | None
    collectivite_code: str | None


async def create(
    session: AsyncSession,
    *,
    issuer: str,
    claim: str,
    value: str,
    role: Role,
    organisation_id: uuid.UUID | None,
    collectivite_code: str | None,
    created_by: str,
) -> IdentityBinding:
    """A new binding. A partner binding needs an active organisation, a department binding an existing
    collectivité, and the others neither; one active binding per (issuer, claim, value)."""
    if role is Role.partner:
        organisation = await session.get(Organisation, organisation_id) if organisation_id else None
        if organisation is None or organisation.deactivated_at is not None:
            raise InvalidInput("organisation_id", "a partner binding needs an active organisation")
        if organisation.seed_key == HOTLINE_SEED_KEY:  # its partners would read every handoff the 119 sent
            raise InvalidInput("organisation_id", "the 119 unit's people are specialists, not its partners")
    elif organisation_id is not None:
        raise InvalidInput("organisation_id", "only a partner binding names an organisation")
    if role is Role.department:
        if not collectivite_code or await unknown_codes(
            await driver(session), TerritoryKind.collectivite, [collectivite_code]
        ):
            raise InvalidInput("collectivite_code", "a department binding needs an existing collectivité")
    elif collectivite_code is not None:
        raise InvalidInput("collectivite_code", "only a department binding names a collectivité")
    active = await session.exec(
        select(IdentityBinding).where(
            IdentityBinding.issuer == issuer,
            IdentityBinding.claim == claim,
            IdentityBinding.value == value,
            IdentityBinding.revoked_at.is_(None),  # type: ignore[union-attr]
        )
    )
    if active.first() is not None:
        raise Conflict("this claim value is already bound: revoke that binding first")
    binding = IdentityBinding(
        issuer=issuer,
        claim=claim,
        value=value,
        role=role,
        organisation_id=organisation_id,
        collectivite_code=collectivite_code,
        created_by=created_by,
    )
    session.add(binding)
    try:
        async with session.begin_nested():  # another admin binding the same value at the same moment
            await session.flush()
    except IntegrityError as exc:
        raise Conflict("this claim value is already bound: revoke that binding first") from exc
    return binding


async def list_(session: AsyncSession, *, issuer: str | None = None) -> list[IdentityBinding]:
    statement = select(IdentityBinding).order_by(IdentityBinding.created_at, IdentityBinding.id)  # type: ignore[arg-type]
    if issuer is not None:
        statement = statement.where(IdentityBinding.issuer == issuer)
    return list((await session.exec(statement)).all())


async def get(session: AsyncSession, binding_id: uuid.UUID) -> IdentityBinding:
    binding = await session.get(IdentityBinding, binding_id)
    if binding is None:
        raise NotFound("no such binding")
    return binding


async def revoke(session: AsyncSession, binding_id: uuid.UUID) -> IdentityBinding:
    """Revoked, never deleted: the row says who could act as what, and until when."""
    binding = await get(session, binding_id)
    if binding.revoked_at is None:
        binding.revoked_at = datetime.now(UTC)
        await session.flush()
    return binding


async def grants(conn: AsyncConnection, issuer: str, claims: Mapping[str, Sequence[str]]) -> set[Grant]:
    """What the active bindings of these claim values give (several values may name the same grant)."""
    pairs = [(claim, value) for claim, values in claims.items() for value in values]
    if not pairs:
        return set()
    rows = await (
        await conn.execute(
            """SELECT b.role, b.organisation_id, b.collectivite_code
                 FROM identity_binding b
                 LEFT JOIN organisation o ON o.id = b.organisation_id
                WHERE b.issuer = %(issuer)s AND b.revoked_at IS NULL AND o.deactivated_at IS NULL
                  AND (b.claim, b.value) IN (SELECT * FROM unnest(%(claims)s::text[], %(values)s::text[]))""",
            {"issuer": issuer, "claims": [c for c, _ in pairs], "values": [v for _, v in pairs]},
        )
    ).fetchall()
    return {Grant(Role(row[0]), row[1], row[2]) for row in rows}
