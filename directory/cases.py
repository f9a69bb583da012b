"""Pseudonymous cases and their pathway: competence, events, timeline.

A partner reads a case only while one of the handoffs it sent or received is under way, and then only
what its handoffs need: age, needs, contact-safety flags, its own handoffs — never another partner's,
never the 119's notes (directory/access.py holds the rules).
"""

from __future__ import annotations

import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from geo.codes import commune_of
from geo.territories import TerritoryKind, unknown_codes

from . import revisions
from .access import (
    ACTIVE_HANDOFF_STATUSES,
    HANDOFF_VISIBLE,
    Principal,
    Role,
    author_visible,
    can_read_case,
    case_visible,
    note_visible,
    sql_params,
)
from .errors import InvalidInput, NotFound
from .handoffs import HANDOFF_FROM, HANDOFF_JSON
from .pathway_models import Case, CaseEvent, CaseStatus, Tristate
from .pathway_schemas import CaseCreate, CasePatch, PathwayEventIn
from .revisions import conditional_update, driver, sql

_ACTIVE = "(" + ", ".join(f"'{status}'" for status in ACTIVE_HANDOFF_STATUSES) + ")"
_REFERENCE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"  # no 0/O, 1/I/L: read aloud on the phone


def new_reference() -> str:
    """Random, never derived from identity: e.g. K7RM-2QXH."""
    chars = "".join(secrets.choice(_REFERENCE_ALPHABET) for _ in range(8))
    return f"{chars[:4]}-{chars[4:]}"


async def _check_territories(session: AsyncSession, collectivite: str | None, commune: str | None) -> str | None:
    """The canonical commune code (an arrondissement counts for its commune), once both codes exist."""
    conn = await driver(session)
    if collectivite is not None and await unknown_codes(conn, TerritoryKind.collectivite, [collectivite]):
        raise InvalidInput("residence_collectivite", "no collectivité with this code")
    if commune is None:
        return None
    code = commune_of(commune)
    if await unknown_codes(conn, TerritoryKind.commune, [code]):
        raise InvalidInput("found_in_commune", "no commune with this INSEE code")
    return code


async def create(session: AsyncSession, data: CaseCreate, *, actor: Principal) -> Case:
    commune = await _check_territories(session, data.residence_collectivite, data.found_in_commune)
    case = Case(
        reference=new_reference(),
        collectivite_code=data.residence_collectivite,
        found_in_commune_code=commune,
        age=data.age,
        gender=data.gender,
        intake_channel=data.intake_channel,
        caller=data.caller,
        known_to_child_welfare=data.known_to_child_welfare or Tristate.unknown,
        needs=list(data.needs or []),
        do_not_contact_minor_directly=bool(data.do_not_contact_minor_directly),
        do_not_contact_parents=bool(data.do_not_contact_parents),
        safe_contact=data.safe_contact,
        created_by=actor.subject,
    )
    session.add(case)
    await session.flush()
    await session.refresh(case)
    return case


async def load(session: AsyncSession, case_id: uuid.UUID, actor: Principal) -> Case:
    """A case its viewer may read (partners: only through a handoff under way), else NotFound."""
    case = await session.get(Case, case_id) if await can_read_case(session, case_id, actor) else None
    if case is None:
        raise NotFound("no such case")
    return case


async def update(
    session: AsyncSession,
    case_id: uuid.UUID,
    patch: CasePatch,
    *,
    expected_version: revisions.Expected | None,
    actor: Principal,
) -> Case:
    case = await load(session, case_id, actor)
    revisions.check_version(case, expected_version)
    given = set(patch.model_fields_set)
    revisions.refuse_clearing(
        patch, ("age", "residence_collectivite", "intake_channel", "caller", "known_to_child_welfare")
    )
    commune = await _check_territories(session, patch.residence_collectivite, patch.found_in_commune)
    renamed = {"residence_collectivite": "collectivite_code", "found_in_commune": "found_in_commune_code"}
    values: dict[str, Any] = {}
    for field in given:
        value = getattr(patch, field)
        if field == "found_in_commune":
            value = commune
        if field == "needs":
            value = list(value or [])
        if field in ("do_not_contact_minor_directly", "do_not_contact_parents"):
            value = bool(value)
        values[renamed.get(field, field)] = value
    await conditional_update(session, case, expected_version=expected_version, values=values)
    return case


async def close(session: AsyncSession, case_id: uuid.UUID, *, actor: Principal) -> Case:
    case = await load(session, case_id, actor)
    if case.status is CaseStatus.open:
        await conditional_update(
            session, case, expected_version=None, values={"status": CaseStatus.closed, "closed_at": datetime.now(UTC)}
        )
    return case


async def add_event(session: AsyncSession, case_id: uuid.UUID, data: PathwayEventIn, *, actor: Principal) -> CaseEvent:
    case = await load(session, case_id, actor)
    event = CaseEvent(
        case_id=case.id,
        collectivite_code=case.collectivite_code,
        kind=data.kind,
        occurred_at=data.occurred_at or datetime.now(UTC),
        note=data.note,
        actor_subject=actor.subject,
        actor_role=actor.role,
        actor_organisation_id=actor.organisation_id,
    )
    session.add(event)
    await session.flush()
    return event


async def partners_to_warn(
    session: AsyncSession, case_id: uuid.UUID, *, except_organisation: uuid.UUID | None
) -> list[uuid.UUID]:
    """Organisations with an active handoff on the case (as sender or receiver): told of a runaway."""
    rows = await sql(
        session,
        f"""
        SELECT DISTINCT organisation_id FROM (
            SELECT receiver_organisation_id AS organisation_id FROM handoff
             WHERE case_id = :case AND status IN {_ACTIVE}
            UNION SELECT sender_organisation_id FROM handoff WHERE case_id = :case AND status IN {_ACTIVE}) o
        WHERE organisation_id IS DISTINCT FROM :skip""",
        {"case": case_id, "skip": except_organisation},
    )
    return [row[0] for row in rows]


# --- reading (JSON built in SQL) -----------------------------------------------------------------

_CASE_FULL = """
    json_build_object(
        'id', c.id, 'reference', c.reference, 'age', c.age, 'gender', c.gender,
        'residence_collectivite', json_build_object('code', k.code, 'name', k.name),
        'found_in_commune', (SELECT json_build_object('code', fc.code, 'name', fc.name) FROM commune fc
                              WHERE fc.code = c.found_in_commune_code),
        'intake_channel', c.intake_channel, 'caller', c.caller, 'known_to_child_welfare', c.known_to_child_welfare,
        'needs', c.needs, 'do_not_contact_minor_directly', c.do_not_contact_minor_directly,
        'do_not_contact_parents', c.do_not_contact_parents, 'safe_contact', c.safe_contact,
        'status', c.status, 'opened_at', c.opened_at, 'closed_at', c.closed_at, 'version', c.version)
"""
# What a partner needs for its handoffs, and nothing more.
_CASE_MINIMAL = """
    json_build_object(
        'id', c.id, 'reference', c.reference, 'age', c.age, 'needs', c.needs,
        'do_not_contact_minor_directly', c.do_not_contact_minor_directly,
        'do_not_contact_parents', c.do_not_contact_parents, 'safe_contact', c.safe_contact,
        'status', c.status, 'version', c.version)
"""


async def view(conn: AsyncConnection, case_id: uuid.UUID, *, actor: Principal, now: datetime) -> tuple[str, int]:
    """(JSON, version) of a case as its viewer may see it, with the handoffs it may see."""
    body = _CASE_FULL if actor.role is Role.specialist else _CASE_MINIMAL
    row = await (
        await conn.execute(
            f"""SELECT (({body})::jsonb || jsonb_build_object('handoffs', coalesce((
                   SELECT jsonb_agg(({HANDOFF_JSON})::jsonb ORDER BY h.created_at, h.id) {HANDOFF_FROM}
                    WHERE h.case_id = c.id AND {HANDOFF_VISIBLE}), '[]')))::text,
                   c.version
              FROM case_record c JOIN collectivite k ON k.code = c.collectivite_code
             WHERE c.id = %(id)s AND {case_visible()}""",
            {"id": case_id, "now": now, **sql_params(actor)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such case")
    return str(row[0]), int(row[1])


async def competent_crips(conn: AsyncConnection, case_id: uuid.UUID, *, actor: Principal) -> str:
    """The CRIP of the child's residence, and of where the child was found when that differs."""
    row = await (
        await conn.execute(
            f"""SELECT coalesce(json_agg(json_build_object(
                       'reason', x.reason,
                       'collectivite', json_build_object('code', k.code, 'name', k.name),
                       'crip', json_build_object(
                           'id', o.id, 'name', o.name,
                           'contact_state', CASE WHEN o.verification = 'verified' THEN 'verified'
                                                 WHEN coalesce(o.phone, o.email, o.website) IS NULL THEN 'missing'
                                                 ELSE 'unverified' END,
                           'phone', o.phone, 'email', o.email))
                   ORDER BY x.position), '[]')::text
              FROM case_record c
              CROSS JOIN LATERAL (
                  SELECT 1 AS position, 'residence' AS reason, c.collectivite_code AS code
                  UNION ALL
                  SELECT 2, 'found_in', fc.collectivite_code FROM commune fc
                   WHERE fc.code = c.found_in_commune_code AND fc.collectivite_code <> c.collectivite_code) x
              JOIN collectivite k ON k.code = x.code
              JOIN organisation o ON o.kind = 'crip' AND o.collectivite_code = x.code
             WHERE c.id = %(id)s AND {case_visible()}
             GROUP BY c.id""",
            {"id": case_id, **sql_params(actor)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such case")
    return str(row[0])


async def pathway(conn: AsyncConnection, case_id: uuid.UUID, *, actor: Principal) -> str:
    """The case's timeline: handoffs created and moved, and pathway events, oldest first. A partner sees
    the moves of its own handoffs and the case's pathway events (a runaway concerns everyone), but no
    note it did not write: neither the 119's notes on events of any kind nor the reasons it gave."""
    row = await (
        await conn.execute(
            f"""SELECT coalesce(json_agg(t.item ORDER BY t.at, t.ord, t.id), '[]')::text FROM (
                SELECT e.at, 1 AS ord, e.id, json_build_object(
                           'type', CASE WHEN e.from_status IS NULL THEN 'handoff_created' ELSE 'handoff_moved' END,
                           'at', e.at, 'handoff_id', e.handoff_id, 'kind', h.kind, 'from', e.from_status,
                           'to', e.to_status, 'reason_code', e.reason_code,
                           'reason', CASE WHEN {note_visible("e")} THEN e.reason END,
                           'by', json_build_object('role', e.actor_role, 'organisation_id', e.actor_organisation_id))
                           AS item
                  FROM handoff_event e JOIN handoff h ON h.id = e.handoff_id
                 WHERE e.case_id = %(id)s AND {HANDOFF_VISIBLE}
                UNION ALL
                SELECT ce.occurred_at, 2, ce.id, json_build_object(
                           'type', 'event', 'at', ce.occurred_at, 'kind', ce.kind,
                           'note', CASE WHEN {note_visible("ce")} THEN ce.note END,
                           'recorded_at', ce.recorded_at,
                           'by', json_build_object('role', ce.actor_role, 'organisation_id',
                                                   CASE WHEN {author_visible("ce")} THEN ce.actor_organisation_id END))
                  FROM case_event ce
                 WHERE ce.case_id = %(id)s AND (ce.kind <> 'note' OR {note_visible("ce")})
            ) t
            HAVING EXISTS (SELECT 1 FROM case_record c WHERE c.id = %(id)s AND {case_visible()})""",
            {"id": case_id, **sql_params(actor)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such case")
    return str(row[0])
