"""Who is calling, and what they may see. Every scoped read and write starts from this module.

Each resource's visibility rule is written here once, as an SQL fragment read with the parameters of
`sql_params` (or `listing_params`): the paths that build their JSON in PostgreSQL embed it, and the ORM
paths run it through the session's own connection (`can_read_case`, `lock_visible_handoff`,
`in_scope`, `manageable`). Nothing else re-derives who may see what.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from geo.territories import TerritoryKind, unknown_codes

from .errors import InvalidInput, NotFound


class Role(StrEnum):
    specialist = "specialist"  # the 119 unit's specialists
    partner = "partner"  # an organisation's staff or system, scoped to that organisation
    department = "department"  # a collectivité's analysts, scoped to its aggregates
    admin = "admin"


@dataclass(frozen=True, slots=True)
class Principal:
    """A verified caller.

    `organisation_id` is the organisation the caller acts for: a partner's own organisation, the 119
    unit for specialists (resolved at authentication, never taken from the token), None for departments
    and admins. `issuer` and `subject` together name one person or system: identity providers other
    than ours will come, and two of them may well use the same subject."""

    subject: str
    role: Role
    organisation_id: uuid.UUID | None = None
    collectivite_code: str | None = None
    # Set when the token came from an API client (client-credentials grant): writes re-check it.
    client_id: uuid.UUID | None = None
    issuer: str = ""

    @property
    def key(self) -> str:
        """The whole principal as one string: what idempotency keys, rate limits and caches are keyed
        by, so that two principals sharing a subject never share an entry."""
        return "\x1f".join(
            (self.issuer, self.subject, self.role.value, str(self.organisation_id or ""), self.collectivite_code or "")
        )


# --- the parameters every SQL fragment below reads -------------------------------------------------

# Statuses of a handoff that is still under way: its sides still need the case.
ACTIVE_HANDOFF_STATUSES = ("sent", "acknowledged", "accepted", "in_progress", "on_hold")
_ACTIVE = "(" + ", ".join(f"'{status}'" for status in ACTIVE_HANDOFF_STATUSES) + ")"


def sql_params(viewer: Principal) -> dict[str, Any]:
    """Who is looking, as the named parameters of this module's SQL fragments."""
    return {
        "viewer_specialist": viewer.role is Role.specialist,
        "viewer_partner_org": viewer.organisation_id if viewer.role is Role.partner else None,
        "viewer_acting_org": viewer.organisation_id,
        "viewer_issuer": viewer.issuer if viewer.role is Role.specialist else None,
        "viewer_subject": viewer.subject if viewer.role is Role.specialist else None,
    }


# --- exact place of a confidential location (a safe house) ------------------------------------------

# The handoffs through which a specialist works a case: those the specialist sent, and those the
# sender (or another assignee) assigned the specialist to — identified by issuer and subject.
_WORKED_BY_VIEWER = """(h.sender_organisation_id = %(viewer_acting_org)s::uuid
       AND ((h.created_by_issuer = %(viewer_issuer)s AND h.created_by = %(viewer_subject)s)
            OR EXISTS (SELECT 1 FROM handoff_assignee ha WHERE ha.handoff_id = h.id AND ha.removed_at IS NULL
                          AND ha.issuer = %(viewer_issuer)s AND ha.subject = %(viewer_subject)s)))"""

# Locations the viewing specialist may see exactly: a service there has accepted a handoff of a case
# the specialist works, and the placement is under way (accepted, in progress, on hold). A request
# the safe house has not accepted gives nothing: sending one is not a way to learn an address.
# Other specialists of the 119 never do.
PLACED_BY_VIEWER = f"""SELECT hs.location_id FROM handoff h JOIN service hs ON hs.id = h.receiver_service_id
     WHERE %(viewer_specialist)s AND h.status IN ('accepted', 'in_progress', 'on_hold') AND {_WORKED_BY_VIEWER}"""

# Who sees a location's exact point, address and metre distance (alias `l` for location): everyone
# for a public one; for a confidential one its own organisation (a partner) and the specialists
# placing a child there. Admins, departments and other partners never do. Never NULL: three-valued
# logic must not turn "not visible" into "unknown".
EXACT_LOCATION = f"""(l.visibility = 'public' OR coalesce(l.organisation_id = %(viewer_partner_org)s::uuid, false)
    OR (%(viewer_specialist)s AND l.id IN ({PLACED_BY_VIEWER})))"""


# --- open data: what the exports publish (HSDS, OGC API Features) ----------------------------------
# A listed service (alias `s`, organisation `o`): not archived, not suspended by Maillage, its
# organisation active — what search shows. Exports publish listed services only, every one as a
# viewer who may see no safe house sees it (`l.public_point`; a confidential location's address,
# name and exact point never), whoever asks: an export leaves Maillage (files, GIS layers, caches),
# and the few people allowed a safe house's address read it in the API, where the read is journalled.
LISTED_SERVICE = "s.archived_at IS NULL AND s.status <> 'suspended' AND o.deactivated_at IS NULL"
# Its place (alias `l`): at `l.public_point` (a confidential location's commune point), never `l.point`.
PUBLISHED_POINT = "l.public_point"


def published_detail(column: str) -> str:
    """A place's own detail (name, address, precision, id…) as published: a public place's only."""
    return f"CASE WHEN l.visibility = 'public' THEN {column} END"


def front_door(column: str) -> str:
    """A confidential place's front-door contact (`l.front_door_phone`, `l.front_door_email`): what
    stands for its address."""
    return f"CASE WHEN l.visibility = 'confidential' THEN {column} END"


# --- care pathways: handoffs, cases, pathway events ------------------------------------------------
# Specialists act for the 119 unit and read every case and handoff. A partner reads the handoffs it
# sent or received (its own records, whatever their status), but a case — its fields, competence,
# pathway, events — only while one of those handoffs is still under way: once they are all over it
# sees nothing of the case and can no longer act on it. Departments and admins read no case.

# The handoff (alias `h`) is the viewer's: specialists, or the partner that sent or received it.
HANDOFF_VISIBLE = """(%(viewer_specialist)s OR h.sender_organisation_id = %(viewer_partner_org)s::uuid
    OR h.receiver_organisation_id = %(viewer_partner_org)s::uuid)"""

# The partner has a handoff under way on the case whose id is `{case_id}`.
_ACTIVE_SIDE = f"""EXISTS (SELECT 1 FROM handoff ah WHERE ah.case_id = {{case_id}} AND ah.status IN {_ACTIVE}
    AND (ah.sender_organisation_id = %(viewer_partner_org)s::uuid
         OR ah.receiver_organisation_id = %(viewer_partner_org)s::uuid))"""


def case_visible(case_id: str = "c.id") -> str:
    """SQL condition: the viewer may read the case whose id is the expression `case_id`."""
    return f"(%(viewer_specialist)s OR {_ACTIVE_SIDE.format(case_id=case_id)})"


# A note (free text on a pathway event or a handoff move, alias `e` with `actor_organisation_id`) reaches
# a partner only when the partner wrote it: the 119's notes never do.
def note_visible(alias: str) -> str:
    return f"(%(viewer_specialist)s OR {alias}.actor_organisation_id = %(viewer_partner_org)s::uuid)"


# Who recorded a pathway event (alias `ce`): a partner learns it for its own events and the 119's. Another
# partner's event on the case ("a placement", "a runaway") shows no organisation, whatever handoffs the
# viewer has or had with it: with it, the kind of event alone would say where the child is. (The moves
# of a partner's own handoffs name their sides, which it knows already.)
def author_visible(alias: str) -> str:
    return f"""(%(viewer_specialist)s OR {alias}.actor_organisation_id = %(viewer_partner_org)s::uuid
        OR {alias}.actor_role IS DISTINCT FROM 'partner')"""


async def _exists(session: AsyncSession, statement: str, params: dict[str, Any]) -> bool:
    connection = await session.connection()
    return (await connection.exec_driver_sql(statement, params)).first() is not None


async def can_read_case(session: AsyncSession, case_id: uuid.UUID, viewer: Principal) -> bool:
    """The same rule as `case_visible`, for the ORM paths (writes that act on a case)."""
    return await _exists(
        session,
        f"SELECT 1 FROM case_record c WHERE c.id = %(id)s AND {case_visible()}",
        {"id": case_id, **sql_params(viewer)},
    )


async def lock_visible_handoff(session: AsyncSession, handoff_id: uuid.UUID, viewer: Principal) -> bool:
    """Locks the handoff for an update when the viewer may read it; a handoff it may not read is never
    touched, so neither the answer nor its timing depends on it."""
    return await _exists(
        session,
        f"SELECT 1 FROM handoff h WHERE h.id = %(id)s AND {HANDOFF_VISIBLE} FOR UPDATE",
        {"id": handoff_id, **sql_params(viewer)},
    )


# --- one check for "is this id in the caller's scope" ---------------------------------------------


class Scoped(StrEnum):
    """What a path's id may name, for `in_scope`."""

    case = "case"
    handoff = "handoff"
    service = "service"
    location = "location"
    service_area = "service_area"
    organisation = "organisation"


def _scope_statements() -> dict[Scoped, str]:
    return {
        Scoped.case: f"SELECT 1 FROM case_record c WHERE c.id = %(id)s AND {case_visible()}",
        Scoped.handoff: f"SELECT 1 FROM handoff h WHERE h.id = %(id)s AND {HANDOFF_VISIBLE}",
        Scoped.service: f"""SELECT 1 FROM service s WHERE s.id = %(id)s AND s.archived_at IS NULL
                               AND {listing_scope("s.organisation_id")}""",
        Scoped.location: f"""SELECT 1 FROM location l WHERE l.id = %(id)s AND l.archived_at IS NULL
                                AND {listing_scope("l.organisation_id")}""",
        Scoped.service_area: f"""SELECT 1 FROM service_area a JOIN service s ON s.id = a.service_id
                                  WHERE a.id = %(id)s AND a.archived_at IS NULL
                                    AND {listing_scope("s.organisation_id")}""",
        Scoped.organisation: f"SELECT 1 FROM organisation o WHERE o.id = %(id)s AND {listing_scope('o.id')}",
    }


async def in_scope(conn: Any, kind: Scoped, row_id: uuid.UUID, viewer: Principal) -> bool:
    """Whether the viewer may act on this row (psycopg `conn`), by the same rules as every read and
    write of it: a row out of scope and a missing one are the same False. Lets a route refuse "not
    yours" (404) before it looks at a request's body or preconditions."""
    statement = _scope_statements()[kind]
    row = await (await conn.execute(statement, {"id": row_id, **listing_params(viewer)})).fetchone()
    return row is not None


# --- statistics ------------------------------------------------------------------------------------


async def statistics_scope(conn: Any, viewer: Principal, asked: str | None) -> list[str] | None:
    """The collectivités whose aggregates the viewer reads (psycopg `conn`): a department its own only —
    naming another is NotFound, whether or not that code exists; the 119 and admins the one asked for
    (NotFound when it does not exist) or the whole country (None)."""
    if viewer.role is Role.department:
        if asked is not None and asked != viewer.collectivite_code:
            raise NotFound("no such collectivité in your scope")
        return [str(viewer.collectivite_code)]
    if viewer.role not in (Role.specialist, Role.admin):
        raise NotFound("no statistics in your scope")
    if asked is None:
        return None
    if await unknown_codes(conn, TerritoryKind.collectivite, [asked]):
        raise NotFound("no collectivité with this code")
    return [asked]


# --- listings: organisations, services, locations, service areas --------------------------------
#
# A partner reaches only its own organisation's listings, admins every listing; anything else is
# NotFound, exactly like a row that does not exist (a body naming one: the InvalidInput of a missing
# one). The rule in its three forms: a statement for the ORM writes, an SQL fragment for the reads
# that build their JSON in PostgreSQL, and the organisation a new listing goes to.
# (models are imported inside the functions: directory.models imports this module.)


def listing_organisation(actor: Principal) -> uuid.UUID | None:
    """The organisation whose listings a caller manages; None for admins (every organisation)."""
    if actor.role is Role.admin:
        return None
    if actor.role is Role.partner and actor.organisation_id is not None:
        return actor.organisation_id
    raise NotFound("nothing to manage here")  # other roles never get here (route policies)


def owns_listing(actor: Principal, organisation_id: uuid.UUID) -> bool:
    """Whether the caller acts for the organisation a listing belongs to: the owner's acts (publishing
    or hiding a location, moving a safe house) and its exact place are its alone — not the admins'."""
    return actor.role is Role.partner and actor.organisation_id == organisation_id


_SCOPED_BY_TABLE = {
    "service": Scoped.service,
    "location": Scoped.location,
    "service_area": Scoped.service_area,
    "organisation": Scoped.organisation,
}


async def load_listing(session: AsyncSession, model: Any, row_id: uuid.UUID, actor: Principal) -> Any:
    """The listing row (Organisation, Service, Location or ServiceArea, not archived) for a write, by
    the same rule as `in_scope`; NotFound when missing, archived or not the caller's — one answer."""
    listing_organisation(actor)  # only partners and admins manage listings
    table = str(model.__tablename__)
    connection = await session.connection()
    raw = await connection.get_raw_connection()
    visible = await in_scope(raw.driver_connection, _SCOPED_BY_TABLE[table], row_id, actor)
    row = await session.get(model, row_id) if visible else None
    if row is None:
        raise NotFound(f"no such {table.replace('_', ' ')}")
    return row


async def organisation_for_new(session: AsyncSession, actor: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    """The organisation a new listing belongs to: a partner's own (a body naming another one is
    answered like one naming a missing organisation), the one an admin names."""
    from .models import Organisation

    own = listing_organisation(actor)
    target = requested or own
    if target is None:
        raise InvalidInput("organisation_id", "admins must say which organisation the listing belongs to")
    organisation = await session.get(Organisation, target) if own is None or target == own else None
    if organisation is None or organisation.deactivated_at is not None:
        raise InvalidInput("organisation_id", "no such organisation")
    return target


def listing_params(viewer: Principal) -> dict[str, Any]:
    """`sql_params` plus what LISTING_SCOPE reads."""
    return {**sql_params(viewer), "viewer_admin": viewer.role is Role.admin}


def listing_scope(organisation_column: str) -> str:
    """SQL: the row whose organisation is in `organisation_column` is one the viewer manages (with the
    parameters of `listing_params`). Never NULL."""
    return f"(%(viewer_admin)s OR coalesce({organisation_column} = %(viewer_partner_org)s::uuid, false))"


# A location's history carries its former points and addresses. Its own organisation reads them; anyone
# else only for a location that is public and has never been confidential: a safe house's former
# address stays as hidden as its current one (alias `l` for the location; `sql_params`).
PLACE_HISTORY_VISIBLE = """(coalesce(l.organisation_id = %(viewer_partner_org)s::uuid, false)
    OR (l.visibility = 'public' AND NOT EXISTS (
            SELECT 1 FROM listing_revision pr WHERE pr.entity = 'location' AND pr.entity_id = l.id
               AND 'confidential' IN (pr.changes->'visibility'->>'old', pr.changes->'visibility'->>'new'))))"""


async def check_managed_organisation(conn: Any, organisation_id: uuid.UUID, viewer: Principal) -> None:
    """NotFound unless the organisation exists and the viewer manages its listings (psycopg `conn`)."""
    row = await (
        await conn.execute(
            f"SELECT 1 FROM organisation o WHERE o.id = %(id)s AND {listing_scope('o.id')}",
            {"id": organisation_id, **listing_params(viewer)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such organisation")


# --- who the caller acts as, named --------------------------------------------------------------


async def acting_as(conn: Any, viewer: Principal) -> str:
    """JSON text of what the caller acts as (psycopg `conn`): its role; the organisation it acts for (a
    partner's own, the 119 unit for specialists) with its name and whether it is active; and the
    collectivité whose aggregates a department reads. Nothing else of the principal (no subject, issuer
    or client): the caller knows who they are, and an answer is one more copy. An id or code that names
    nothing (a token issued by hand) keeps a null name, and such an organisation is not active."""
    row = await (
        await conn.execute(
            """SELECT json_build_object(
                   'role', %(role)s::text,
                   'organisation', CASE WHEN %(organisation)s::uuid IS NOT NULL THEN json_build_object(
                       'id', %(organisation)s::uuid, 'name', o.name,
                       'active', o.id IS NOT NULL AND o.deactivated_at IS NULL) END,
                   'collectivite', CASE WHEN %(collectivite)s::text IS NOT NULL THEN json_build_object(
                       'code', %(collectivite)s::text, 'name', k.name) END)::text
                 FROM (SELECT) one
                 LEFT JOIN organisation o ON o.id = %(organisation)s::uuid
                 LEFT JOIN collectivite k ON k.code = %(collectivite)s::text""",
            {
                "role": viewer.role.value,
                "organisation": viewer.organisation_id,
                # Only a department's collectivité scopes anything (statistics_scope).
                "collectivite": viewer.collectivite_code if viewer.role is Role.department else None,
            },
        )
    ).fetchone()
    return str(row[0])
