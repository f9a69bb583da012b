"""What Maillage publishes as open data: its listed services, organisations and places, read as a
viewer who may see no safe house (`access.LISTED_SERVICE`, `access.published_detail`), whoever asks.

The rows are plain JSON built by PostgreSQL, in Maillage's own terms; sync/hsds.py maps them to the
exchange format. Confidentiality is applied here, in SQL, so that no mapping can publish what these
statements did not read: a confidential location comes as its commune (code, name, point) and its
front-door contact — never its name, address, exact point or even its own id, which would let anyone
count a commune's safe houses or see one move. It is named by what is published of it instead
(organisation, commune, front door): two houses of one organisation in one commune behind the same
front door are one published place.

No modification date is published: the dates Maillage keeps move with a safe house's hidden edits
and miss some published ones (an area, a place becoming confidential), so a "modified after" feed
built on them would either reveal a move or leave an address in someone's copy. Readers take the
whole directory (a page series or the dump) instead.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from psycopg import AsyncConnection

from .access import LISTED_SERVICE, PUBLISHED_POINT, front_door, published_detail

_PLACE = f"""CASE WHEN l.id IS NULL THEN NULL ELSE jsonb_build_object(
        'id', {published_detail("l.id")},
        'organisation_id', l.organisation_id,
        'confidential', l.visibility = 'confidential',
        'name', {published_detail("l.name")},
        'address', {published_detail("l.address")},
        'precision', coalesce({published_detail("l.point_precision")}, 'commune'),
        'lon', round(ST_X({PUBLISHED_POINT})::numeric, 6), 'lat', round(ST_Y({PUBLISHED_POINT})::numeric, 6),
        'front_door', {front_door("jsonb_build_object('phone', l.front_door_phone, 'email', l.front_door_email)")},
        'commune', jsonb_build_object('code', lc.code, 'name', lc.name, 'postal_codes', lc.postal_codes,
                                      'departement', d.name, 'region', r.name)) END"""


def _organisation(o: str) -> str:
    """An organisation (alias `o`) as published: what /v1/organisations shows every role."""
    return f"""jsonb_build_object(
        'id', {o}.id, 'name', {o}.name, 'kind', {o}.kind, 'description', {o}.description,
        'website', {o}.website, 'email', {o}.email, 'phone', {o}.phone,
        'siren', {o}.siren, 'siret', {o}.siret, 'rna', {o}.rna)"""


# The time zone a service's hours and closure are read in: its place's, else its organisation's seat's.
_TZ = "coalesce(d.timezone, 'Europe/Paris')"

_SERVICE = f"""jsonb_build_object(
        'id', s.id, 'name', s.name, 'description', s.description, 'specialisms', s.specialisms,
        'audiences', s.audiences, 'age_min', s.age_min, 'age_max', s.age_max, 'genders', s.genders,
        'languages', s.languages, 'channels', s.channels,
        'phone', s.phone, 'email', s.email, 'website', s.website, 'schedule', s.schedule,
        'closed_now', service_closed_for(s.status, s.closed_from, s.closed_until, now()),
        'closure', CASE WHEN s.status = 'temporarily_closed' AND (s.closed_until IS NULL OR s.closed_until > now())
                        THEN jsonb_build_object(
                            'from', to_char(s.closed_from AT TIME ZONE {_TZ}, 'YYYY-MM-DD à HH24:MI'),
                            'until', to_char(s.closed_until AT TIME ZONE {_TZ}, 'YYYY-MM-DD à HH24:MI'),
                            'message', s.closure_message) END,
        'verified_on', (s.last_verified_at AT TIME ZONE 'UTC')::date,
        'timezone', {_TZ},
        'today', (now() AT TIME ZONE {_TZ})::date,
        'source', CASE WHEN s.source IS NOT NULL THEN jsonb_build_object(
                      'slug', s.source, 'updated_on', s.source_updated_on) END,
        'organisation', {_organisation("o")},
        'place', {_PLACE},
        'areas', (SELECT coalesce(jsonb_agg(jsonb_build_object(
                      'id', a.id, 'communes', a.communes, 'departements', a.departements,
                      'collectivites', a.collectivites, 'regions', a.regions, 'radius_km', a.radius_km,
                      'national', a.national) ORDER BY a.created_at, a.id), '[]')
                    FROM service_area a WHERE a.service_id = s.id AND a.archived_at IS NULL))"""

_FROM = """FROM service s
      JOIN organisation o ON o.id = s.organisation_id
      LEFT JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL
      LEFT JOIN commune lc ON lc.code = coalesce(l.commune_code, o.seat_commune_code)
      LEFT JOIN departement d ON d.code = lc.departement_code
      LEFT JOIN region r ON r.code = d.region_code"""


@dataclass(frozen=True)
class ServiceFilter:
    """Which listed services: full text; any of these specialisms, audiences, channels or sources (an
    empty tuple matches none); one organisation; only those with a place; these ids."""

    text: str | None = None
    specialisms: tuple[str, ...] | None = None
    audiences: tuple[str, ...] | None = None
    channels: tuple[str, ...] | None = None
    sources: tuple[str, ...] | None = None
    organisation_id: uuid.UUID | None = None
    placed: bool = False
    ids: tuple[uuid.UUID, ...] | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        conditions = [LISTED_SERVICE]
        if self.text is not None:
            conditions.append("s.search_vector @@ websearch_to_tsquery('public.french_unaccent', %(text)s)")
        if self.specialisms is not None:
            conditions.append("s.specialisms && %(specialisms)s::varchar[]")
        if self.audiences is not None:
            conditions.append("s.audiences && %(audiences)s::varchar[]")
        if self.channels is not None:
            conditions.append("s.channels && %(channels)s::varchar[]")
        if self.sources is not None:
            conditions.append("s.source = ANY(%(sources)s::varchar[])")
        if self.organisation_id is not None:
            conditions.append("s.organisation_id = %(organisation_id)s::uuid")
        if self.placed:
            conditions.append("l.id IS NOT NULL")
        if self.ids is not None:
            conditions.append("s.id = ANY(%(ids)s::uuid[])")
        params = {
            "text": self.text,
            "specialisms": list(self.specialisms or ()),
            "audiences": list(self.audiences or ()),
            "channels": list(self.channels or ()),
            "sources": list(self.sources or ()),
            "organisation_id": self.organisation_id,
            "ids": list(self.ids or ()),
        }
        return " AND ".join(conditions), params


async def count_services(conn: AsyncConnection, which: ServiceFilter) -> int:
    where, params = which.where()
    row = await (await conn.execute(f"SELECT count(*) {_FROM} WHERE {where}", params)).fetchone()
    assert row is not None
    return int(row[0])


async def services(
    conn: AsyncConnection,
    which: ServiceFilter,
    *,
    limit: int,
    offset: int = 0,
    after: uuid.UUID | None = None,
) -> list[dict[str, Any]]:
    """The `limit` listed services after `offset` of them, or after the id `after` (a whole dump in
    linear time), by id. The page's ids are found first, so only its own rows are built."""
    where, params = which.where()
    rows = await (
        await conn.execute(
            f"""WITH page AS (SELECT s.id {_FROM}
                               WHERE {where} AND (%(after)s::uuid IS NULL OR s.id > %(after)s::uuid)
                               ORDER BY s.id OFFSET %(offset)s LIMIT %(limit)s)
                SELECT {_SERVICE} FROM page JOIN service s ON s.id = page.id {_FROM.removeprefix("FROM service s")}
                 ORDER BY s.id""",
            {**params, "after": after, "offset": offset, "limit": limit},
        )
    ).fetchall()
    return [row[0] for row in rows]


# Organisations are published as /v1/organisations shows them: every active one.
_ORGANISATIONS = """FROM organisation org WHERE org.deactivated_at IS NULL
    AND (%(text)s::text IS NULL
         OR to_tsvector('public.french_unaccent', org.name || ' ' || coalesce(org.description, ''))
            @@ websearch_to_tsquery('public.french_unaccent', %(text)s))
    AND (%(ids)s::uuid[] IS NULL OR org.id = ANY(%(ids)s::uuid[]))
    AND (%(after)s::uuid IS NULL OR org.id > %(after)s::uuid)"""


async def count_organisations(conn: AsyncConnection, *, text: str | None = None) -> int:
    params = {"text": text, "ids": None, "after": None}
    row = await (await conn.execute(f"SELECT count(*) {_ORGANISATIONS}", params)).fetchone()
    assert row is not None
    return int(row[0])


async def organisations(
    conn: AsyncConnection,
    *,
    limit: int,
    offset: int = 0,
    after: uuid.UUID | None = None,
    text: str | None = None,
    ids: tuple[uuid.UUID, ...] | None = None,
    places: bool = False,
) -> list[dict[str, Any]]:
    """The `limit` active organisations after `offset` of them or after the id `after`, by id; with
    `places`, each with the published places of its listed services (one per published place)."""
    rows = await (
        await conn.execute(
            f"""SELECT {_organisation("org")} || CASE WHEN %(places)s THEN jsonb_build_object('places', (
                       SELECT coalesce(jsonb_agg(place ORDER BY place->>'id', place::text), '[]')
                         FROM (SELECT DISTINCT {_PLACE} AS place {_FROM}
                                WHERE s.organisation_id = org.id AND l.id IS NOT NULL AND {LISTED_SERVICE}) p))
                       ELSE '{{}}'::jsonb END
                  {_ORGANISATIONS} ORDER BY org.id OFFSET %(offset)s LIMIT %(limit)s""",
            {
                "text": text,
                "ids": list(ids) if ids is not None else None,
                "after": after,
                "places": places,
                "offset": offset,
                "limit": limit,
            },
        )
    ).fetchall()
    return [row[0] for row in rows]


async def sources(conn: AsyncConnection) -> list[dict[str, Any]]:
    """The outside sources listings were imported from, with their licences."""
    rows = await (
        await conn.execute(
            "SELECT jsonb_build_object('slug', slug, 'name', name, 'licence', licence, 'url', url)"
            " FROM data_source ORDER BY slug"
        )
    ).fetchall()
    return [row[0] for row in rows]


async def snapshot_time(conn: AsyncConnection) -> str:
    """When the transaction's snapshot was taken (its start): what a dump read in it is as of."""
    row = await (await conn.execute("SELECT to_json(now())#>>'{}'")).fetchone()
    assert row is not None
    return str(row[0])
