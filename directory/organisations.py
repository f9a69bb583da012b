"""Organisations: reads (JSON built in SQL from plain columns) and admin writes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.territories import TerritoryKind, unknown_codes

from . import revisions
from .access import Principal, Role, load_listing
from .errors import InvalidInput, NotFound
from .models import Organisation, OrganisationKind
from .schemas import OrganisationCreate, OrganisationPatch, VerificationUpdate

_ORGANISATION_JSON = """
    json_build_object(
        'id', o.id, 'name', o.name, 'kind', o.kind, 'description', o.description,
        'website', o.website, 'email', o.email, 'phone', o.phone,
        'identifiers', json_build_object('siren', o.siren, 'siret', o.siret, 'rna', o.rna),
        'collectives', o.collectives,
        'collectivite', (SELECT json_build_object('code', k.code, 'name', k.name)
                           FROM collectivite k WHERE k.code = o.collectivite_code),
        'seat', (SELECT json_build_object('code', c.code, 'name', c.name) FROM commune c
                  WHERE c.code = o.seat_commune_code),
        'verification', o.verification, 'verified_at', o.verified_at,
        'deactivated_at', o.deactivated_at, 'demo', o.demo)
"""

_SERVICES_JSON = """
    (SELECT coalesce(json_agg(json_build_object(
                'id', s.id, 'name', s.name, 'specialisms', s.specialisms, 'status', s.status,
                'demo', s.demo) ORDER BY s.name, s.id), '[]')
       FROM service s WHERE s.organisation_id = o.id AND s.archived_at IS NULL)
"""


async def list_(
    conn: AsyncConnection,
    *,
    viewer: Principal,
    kind: str | None,
    collective: str | None,
    collectivite: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(name, id, JSON) of organisations by name; deactivated ones only for admins."""
    params: dict[str, Any] = {
        "kind": kind,
        "collective": collective,
        "collectivite": collectivite,
        "limit": limit,
        "admin": viewer.role is Role.admin,
        "after_name": after[0] if after else None,
        "after_id": after[1] if after else None,
    }
    rows = await (
        await conn.execute(
            f"""SELECT o.name, o.id::text, {_ORGANISATION_JSON}::text FROM organisation o
             WHERE (o.deactivated_at IS NULL OR %(admin)s)
               AND (%(kind)s::text IS NULL OR o.kind = %(kind)s::text)
               AND (%(collective)s::text IS NULL OR %(collective)s::varchar = ANY(o.collectives))
               AND (%(collectivite)s::text IS NULL OR o.collectivite_code = %(collectivite)s::text)
               AND (%(after_name)s::text IS NULL OR (o.name, o.id) > (%(after_name)s::text, %(after_id)s::uuid))
             ORDER BY o.name, o.id LIMIT %(limit)s""",
            params,
        )
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


async def get(conn: AsyncConnection, organisation_id: uuid.UUID, *, viewer: Principal) -> tuple[str, int]:
    """(JSON, version) of an organisation with its current services."""
    row = await (
        await conn.execute(
            f"""SELECT (({_ORGANISATION_JSON})::jsonb || jsonb_build_object('services', {_SERVICES_JSON}))::text,
                       o.version
              FROM organisation o WHERE o.id = %(id)s AND (o.deactivated_at IS NULL OR %(admin)s)""",
            {"id": organisation_id, "admin": viewer.role is Role.admin},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such organisation")
    return str(row[0]), int(row[1])


async def crip_of(conn: AsyncConnection, collectivite_code: str) -> str:
    """The CRIP competent for a collectivité, with its services and the state of its contact details."""
    row = await (
        await conn.execute(
            f"""SELECT (({_ORGANISATION_JSON})::jsonb || jsonb_build_object(
                       'services', {_SERVICES_JSON},
                       'contact_state', CASE WHEN o.verification = 'verified' THEN 'verified'
                                             WHEN coalesce(o.phone, o.email, o.website) IS NULL THEN 'missing'
                                             ELSE 'unverified' END))::text
              FROM organisation o WHERE o.kind = 'crip' AND o.collectivite_code = %(code)s::text""",
            {"code": collectivite_code},
        )
    ).fetchone()
    if row is None:
        raise NotFound(f"no CRIP for collectivité {collectivite_code!r}")
    return str(row[0])


# --- writes (admins) ---------------------------------------------------------------------------


async def _check_territory(session: AsyncSession, field: str, kind: TerritoryKind, code: str | None) -> None:
    if code is not None and await unknown_codes(await revisions.driver(session), kind, [code]):
        raise InvalidInput(field, f"no {kind.value} with this code")


def _values(data: OrganisationCreate | OrganisationPatch, fields: set[str]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for field in fields:
        value = getattr(data, field)
        if field in ("website", "email") and value is not None:
            value = str(value)
        if field == "collectives" and value is None:
            value = []
        values[field] = value
    return values


async def create(
    session: AsyncSession, data: OrganisationCreate, *, actor: Principal, request_id: str | None
) -> Organisation:
    await _check_territory(session, "collectivite_code", TerritoryKind.collectivite, data.collectivite_code)
    await _check_territory(session, "seat_commune_code", TerritoryKind.commune, data.seat_commune_code)
    if data.kind == OrganisationKind.crip:
        raise InvalidInput("kind", "CRIPs are seeded, one per collectivité")
    values = _values(data, set(data.model_fields_set | {"name", "kind"}))
    organisation = Organisation(**values)
    session.add(organisation)
    await session.flush()
    await revisions.record_creation(session, organisation, values, actor=actor, request_id=request_id)
    await session.refresh(organisation)
    return organisation


async def update(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    patch: OrganisationPatch,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
    request_id: str | None,
) -> Organisation:
    organisation = await load_listing(session, Organisation, organisation_id, actor)
    revisions.check_version(organisation, expected_version)
    given = set(patch.model_fields_set)
    revisions.refuse_clearing(patch, ("name", "kind"))
    if patch.kind == OrganisationKind.crip or (organisation.kind == OrganisationKind.crip and "kind" in given):
        raise InvalidInput("kind", "CRIPs are seeded, one per collectivité")
    await _check_territory(session, "collectivite_code", TerritoryKind.collectivite, patch.collectivite_code)
    await _check_territory(session, "seat_commune_code", TerritoryKind.commune, patch.seat_commune_code)
    await revisions.update_row(
        session,
        organisation,
        expected_version=expected_version,
        values=_values(patch, given),
        action="update",
        actor=actor,
        request_id=request_id,
    )
    return organisation


async def deactivate(
    session: AsyncSession, organisation_id: uuid.UUID, *, actor: Principal, request_id: str | None
) -> Organisation:
    """Takes the organisation and its listings out of search; its clients can no longer get tokens."""
    organisation = await load_listing(session, Organisation, organisation_id, actor)
    if organisation.deactivated_at is None:
        await revisions.update_row(
            session,
            organisation,
            expected_version=None,
            values={"deactivated_at": datetime.now(UTC)},
            action="deactivate",
            actor=actor,
            request_id=request_id,
        )
    return organisation


async def set_verification(
    session: AsyncSession,
    organisation_id: uuid.UUID,
    data: VerificationUpdate,
    *,
    actor: Principal,
    request_id: str | None,
) -> Organisation:
    """Record that the organisation (and, e.g., its membership of the collective) was checked."""
    organisation = await load_listing(session, Organisation, organisation_id, actor)
    verified = data.state == "verified"
    await revisions.update_row(
        session,
        organisation,
        expected_version=None,
        values={"verification": data.state, "verified_at": datetime.now(UTC) if verified else None},
        action="verification",
        actor=actor,
        request_id=request_id,
        always=True,
    )
    return organisation
