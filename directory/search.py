"""Service search: near a place (or in a bounding box), for a need, now — without exposing a safe house.

Confidentiality is enforced in SQL, for every caller alike:
- every spatial filter and ordering uses `location.public_point` (the commune's point for a
  confidential location), so no combination of radius, bbox or cursor can narrow a safe house
  down further than its commune;
- the exact point, address and metre distance are returned only to those allowed to see them
  (`VISIBLE`); everyone else gets the commune point, a front-door contact and a distance rounded to
  the kilometre, computed from the commune point;
- every feature says whether its place is `confidential`, to those who see it exactly too: their
  client must know not to pass that address on (the flag tells no one else anything new: a hidden
  safe house already comes with its `front_door` and no address).

The whole page, GeoJSON included, is built by PostgreSQL (DESIGN §6): Python only assembles SQL
from allow-listed fragments and passes parameters.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from psycopg import AsyncConnection, AsyncRawCursor

from . import hours
from .access import EXACT_LOCATION, LISTED_SERVICE, PLACED_BY_VIEWER, Principal, Role, sql_params

STALE_AFTER_DAYS = 180


@dataclass(frozen=True)
class Point:
    lon: float
    lat: float


@dataclass(frozen=True)
class BBox:
    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float


# The territories a place of danger may be, by the table holding their boundaries (allow-listed).
AWAY_TERRITORIES = ("commune", "departement", "collectivite")


@dataclass(frozen=True)
class Away:
    """Éloignement: keep only services received at least `min_m` metres from a place of danger — a
    point, or any point of a commune's, a département's or a collectivité's territory (its boundary,
    not its centre: a large commune's edge can lie kilometres from its point)."""

    min_m: float
    point: Point | None = None
    territory: tuple[str, str] | None = None  # (one of AWAY_TERRITORIES, code), with a boundary

    def geography(self) -> str:
        """The place of danger as one geography (SQL, allow-listed shapes)."""
        if self.territory is None:
            return "ST_SetSRID(ST_MakePoint(%(away_lon)s::float8, %(away_lat)s::float8), 4326)::geography"
        table = self.territory[0]
        assert table in AWAY_TERRITORIES
        return f"(SELECT boundary::geography FROM {table} WHERE code = %(away_code)s::text)"

    def params(self) -> dict[str, Any]:
        return {
            "away_m": self.min_m,
            "away_lon": self.point.lon if self.point else None,
            "away_lat": self.point.lat if self.point else None,
            "away_code": self.territory[1] if self.territory else None,
        }


# Away and outside judge where a service receives people, never more precisely than the viewer may
# know it: a public location by its point; a safe house by its whole commune (its territory, which is
# public), so that it is kept only when every point of its commune is far enough — its door may be
# anywhere in it — and neither filter can narrow one down. `outside` reads the location's commune.
# A service without a location (a phone line, an online service) is no place near danger: it stays.
_RECEIVED_AT = (
    "(CASE WHEN l.visibility = 'confidential' THEN coalesce(lc.boundary, l.public_point)"
    " ELSE l.public_point END)::geography"
)
_AWAY = f"(l.id IS NULL OR NOT ST_DWithin({_RECEIVED_AT}, {{place}}, %(away_m)s))"
_OUTSIDE = (
    "(l.id IS NULL OR NOT (lc.departement_code = ANY(%(outside_departements)s::text[])"
    " OR lc.collectivite_code = ANY(%(outside_collectivites)s::text[])))"
)


@dataclass(frozen=True)
class Filters:
    specialisms: tuple[str, ...] = ()
    match_all: bool = False
    audience: str | None = None
    age: int | None = None
    gender: str | None = None
    language: str | None = None
    channel: str | None = None
    open_at: datetime | None = None
    available: bool = False
    collective: str | None = None
    text: str | None = None
    away: Away | None = None
    outside_departements: tuple[str, ...] = ()
    outside_collectivites: tuple[str, ...] = ()

    def active(self) -> list[tuple[str, str]]:
        """(public name, SQL condition) of each filter in use, in a stable order."""
        conditions = []
        if self.specialisms:
            operator = "@>" if self.match_all else "&&"
            conditions.append(("specialism", f"s.specialisms {operator} %(specialisms)s::varchar[]"))
        if self.audience:
            conditions.append(("audience", "%(audience)s = ANY(s.audiences)"))
        if self.age is not None:
            conditions.append(
                ("age", "(s.age_min IS NULL OR s.age_min <= %(age)s) AND (s.age_max IS NULL OR s.age_max >= %(age)s)")
            )
        if self.gender:
            # No genders listed means no restriction; languages, channels and audiences left empty are
            # unknown, and unknown does not match a filter.
            conditions.append(("gender", "(cardinality(s.genders) = 0 OR %(gender)s = ANY(s.genders))"))
        if self.language:
            conditions.append(("language", "%(language)s = ANY(s.languages)"))
        if self.channel:
            conditions.append(("channel", "%(channel)s = ANY(s.channels)"))
        if self.open_at is not None:
            conditions.append(("open", f"{_OPEN_AT} IS TRUE"))
        if self.available:
            conditions.append(("available", "s.capacity IS DISTINCT FROM 'full'"))
        if self.collective:
            conditions.append(("collective", "%(collective)s = ANY(o.collectives)"))
        if self.text:
            conditions.append(("q", "s.search_vector @@ websearch_to_tsquery('public.french_unaccent', %(q)s)"))
        if self.away is not None:
            conditions.append(("away_from", _AWAY.format(place=self.away.geography())))
        if self.outside_departements or self.outside_collectivites:
            conditions.append(("outside", _OUTSIDE))
        return conditions

    def params(self) -> dict[str, Any]:
        return {
            "specialisms": list(self.specialisms),
            "audience": self.audience,
            "age": self.age,
            "gender": self.gender,
            "language": self.language,
            "channel": self.channel,
            "at": self.open_at,
            "collective": self.collective,
            "q": self.text,
            **(self.away.params() if self.away else {"away_m": None, "away_lon": None, "away_lat": None}),
            "outside_departements": list(self.outside_departements),
            "outside_collectivites": list(self.outside_collectivites),
        }


@dataclass(frozen=True)
class Query:
    viewer: Principal
    origin: Point | None = None
    bbox: BBox | None = None
    radius_m: float = 30_000
    include_covering: bool = True
    filters: Filters = field(default_factory=Filters)
    limit: int = 20
    # Keyset position: (sort distance, stale, id) for an origin search, (id,) for a bbox.
    after: tuple[Any, ...] | None = None


@dataclass(frozen=True)
class Page:
    features: list[str]
    last_key: tuple[Any, ...] | None  # set when there is a next page
    empty_reason: dict[str, Any] | None
    # Safe houses this page shows a specialist exactly (location ids): each such read is journalled.
    exact_confidential: list[uuid.UUID] = field(default_factory=list)


# A service with what its feature shows: organisation, location, commune, and the département whose
# time zone and holidays its hours follow (the organisation's seat when it has no location).
JOINS = """
    JOIN organisation o ON o.id = s.organisation_id
    LEFT JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL
    LEFT JOIN commune lc ON lc.code = coalesce(l.commune_code, o.seat_commune_code)
    LEFT JOIN departement d ON d.code = lc.departement_code
"""
_FROM = "FROM service s " + JOINS
_BASE = LISTED_SERVICE
_TIMEZONE, _HOLIDAY_ZONE = "coalesce(d.timezone, 'Europe/Paris')", "coalesce(d.holiday_zone, 'FR')"
_OPEN_AT = hours.open_at_sql("%(at)s::timestamptz", _TIMEZONE, _HOLIDAY_ZONE)
_OPEN_NOW = hours.open_at_sql("%(now)s::timestamptz", _TIMEZONE, _HOLIDAY_ZONE)
_NEXT = hours.next_opening_sql("%(now)s::timestamptz", _TIMEZONE, _HOLIDAY_ZONE)
_ORIGIN = "ST_SetSRID(ST_MakePoint(%(lon)s::float8, %(lat)s::float8), 4326)"
_ENVELOPE = "ST_MakeEnvelope(%(min_lon)s, %(min_lat)s, %(max_lon)s, %(max_lat)s, 4326)"
VISIBLE = EXACT_LOCATION
# The safe house a row shows a specialist exactly, if any (its owner's own reads are not journalled).
EXACT_CONFIDENTIAL = f"""CASE WHEN %(viewer_specialist)s AND l.visibility = 'confidential' AND {EXACT_LOCATION}
                           THEN l.id END"""
_STALE = f"(s.last_verified_at IS NULL OR s.last_verified_at < %(now)s - interval '{STALE_AFTER_DAYS} days')"


def _distance_sql() -> str:
    exact = f"ST_Distance(l.point::geography, {_ORIGIN}::geography)"
    coarse = f"round(ST_Distance(l.public_point::geography, {_ORIGIN}::geography) / 1000) * 1000"
    return f"CASE WHEN l.id IS NULL THEN NULL WHEN {VISIBLE} THEN round({exact}) ELSE {coarse} END"


def feature_sql(*, with_origin: bool, match: str | None = None) -> str:
    """One service as a GeoJSON Feature, confidentiality applied for the viewer; with `match` (a
    search's), why it is on the page.

    One scalar subquery, so that PostgreSQL evaluates it after the sort and the limit, for the page's
    rows only, and reads the opening hours once (from the calendars, see directory/hours.py): the next
    opening only when the service is closed now, the only case where it is not null."""
    distance = "sort.distance" if with_origin else "NULL::float8"
    why = f"'match', {match}," if match else ""
    covers = f"(s.covers_national OR coalesce(ST_Covers(s.coverage, {_ORIGIN}), false))" if with_origin else "false"
    return f"""
    (SELECT json_build_object(
        'type', 'Feature',
        'id', s.id,
        'geometry', CASE WHEN l.id IS NULL THEN NULL
                         ELSE ST_AsGeoJSON(CASE WHEN {VISIBLE} THEN l.point ELSE l.public_point END, 6)::json END,
        'properties', json_build_object(
            'name', s.name,
            'organisation', json_build_object('id', o.id, 'name', o.name, 'kind', o.kind),
            'specialisms', s.specialisms,
            'audiences', s.audiences, 'age_min', s.age_min, 'age_max', s.age_max, 'genders', s.genders,
            'languages', s.languages, 'channels', s.channels,
            'distance_m', {distance}::bigint,
            'covers', {covers},
            'location_precision', CASE WHEN l.id IS NULL THEN NULL
                                       WHEN {VISIBLE} THEN l.point_precision ELSE 'commune' END,
            'confidential', CASE WHEN l.id IS NOT NULL THEN l.visibility = 'confidential' END,
            'commune', CASE WHEN lc.code IS NULL THEN NULL ELSE json_build_object('code', lc.code, 'name', lc.name) END,
            'address', CASE WHEN l.id IS NOT NULL AND {VISIBLE} THEN l.address END,
            'front_door', CASE WHEN l.visibility = 'confidential' AND NOT {VISIBLE}
                               THEN json_build_object('phone', l.front_door_phone, 'email', l.front_door_email) END,
            'contact', json_build_object('phone', s.phone, 'email', s.email, 'website', s.website),
            'open_now', hours.open_now,
            'next_opening', hours.next_opening,
            'status', s.status,
            'closure', CASE WHEN s.status = 'temporarily_closed' THEN json_build_object(
                'from', s.closed_from, 'until', s.closed_until, 'message', s.closure_message) END,
            'capacity', CASE WHEN s.capacity IS NULL THEN NULL ELSE json_build_object(
                'state', s.capacity, 'places', s.capacity_places, 'as_of', s.capacity_as_of) END,
            'last_verified_at', s.last_verified_at,
            'stale', {_STALE},
            {why}
            'source', (SELECT json_build_object('name', d.name, 'licence', d.licence, 'url', d.url,
                                                'updated_on', s.source_updated_on)
                         FROM data_source d WHERE d.slug = s.source),
            'demo', s.demo))
       FROM (SELECT now_.open_now, CASE WHEN now_.open_now IS FALSE THEN {_NEXT} END AS next_opening
               FROM (SELECT {_OPEN_NOW} AS open_now OFFSET 0) now_) hours)  -- fenced: evaluated once
    """


# Distance bands of `match`: coarse on purpose (a specialist reads "2–10 km" at a glance), and no
# finer than the km-rounded distance of a safe house.
_BANDS = ((2_000, "0-2 km"), (10_000, "2-10 km"), (30_000, "10-30 km"), (100_000, "30-100 km"))


def _match_sql(query: Query) -> str:
    """Why a service is on the page and where: the requested specialisms it offers, how it reaches the
    place, the distance band, whether it is open, its capacity, its freshness and, with `away_from`,
    how far from the place of danger it receives people (whole km, rounded down; for a safe house, the
    nearest point of its commune: at least that far)."""
    if query.bbox is not None:
        reach = "'in_box'"
        band = "NULL"
    else:
        reach = f"""CASE WHEN l.id IS NOT NULL
                              AND ST_DWithin(l.public_point::geography, {_ORIGIN}::geography, %(radius)s)
                         THEN 'within_radius'
                         WHEN s.covers_national THEN 'national'
                         WHEN ST_Covers(s.coverage, {_ORIGIN}) THEN 'covers_place' END"""
        steps = " ".join(f"WHEN sort.distance < {limit} THEN '{label}'" for limit, label in _BANDS)
        band = f"CASE WHEN sort.distance IS NULL THEN NULL {steps} ELSE '100+ km' END"
    away = query.filters.away
    away_km = "NULL::int"
    if away is not None:
        away_m = f"ST_Distance({_RECEIVED_AT}, {away.geography()})"
        away_km = f"CASE WHEN l.id IS NULL THEN NULL ELSE floor({away_m} / 1000)::int END"
    return f"""json_build_object(
        'specialisms', ARRAY(SELECT x FROM unnest(s.specialisms) x
                              WHERE x = ANY(%(specialisms)s::varchar[]) ORDER BY x),
        'reach', {reach},
        'distance_band', {band},
        'open', CASE WHEN hours.open_now THEN 'open_now' WHEN hours.next_opening IS NOT NULL THEN 'opens_later'
                     WHEN hours.open_now IS NULL THEN 'hours_unknown' ELSE 'closed' END,
        'capacity', s.capacity,
        'fresh', NOT {_STALE},
        'away_km', {away_km})"""


def _specialisms(query: Query, alias: str) -> str:
    """The specialism filter on search points `alias` (true without one)."""
    if not query.filters.specialisms:
        return "true"
    operator = "@>" if query.filters.match_all else "&&"
    return f"{alias}.specialisms {operator} %(specialisms)s::varchar[]"


def _geographic_branches(query: Query, *, radius: str = "%(radius)s", specialisms: bool = True) -> list[str]:
    """Candidate ids, each branch able to use its own index; UNION removes duplicates. With
    `specialisms`, the nearby branch filters them in the search points already (the filter is applied
    again with the others: the same rows either way)."""
    if query.bbox is not None:
        return [
            f"SELECT s.id {_FROM} WHERE l.public_point && {_ENVELOPE} AND ST_Intersects(l.public_point, {_ENVELOPE})"
        ]
    nearby = f"""SELECT p.service_id FROM search_point p
                  WHERE ST_DWithin(p.geog, {_ORIGIN}::geography, {radius})
                    AND {_specialisms(query, "p") if specialisms else "true"}"""
    branches = [f"SELECT s.id FROM ({nearby}) n JOIN service s ON s.id = n.service_id {JOINS} WHERE true"]
    if radius != "%(radius)s":
        # Locations the viewer sees exactly sort by their exact point, which can lie anywhere in their
        # commune: the bound does not hold for them, so they keep the full radius (a handful of rows).
        if query.viewer.role is Role.partner:
            branches.append(
                f"SELECT s.id {_FROM} WHERE l.organisation_id = %(viewer_partner_org)s"
                " AND l.visibility = 'confidential'"
                f" AND ST_DWithin(l.public_point::geography, {_ORIGIN}::geography, %(radius)s)"
            )
        elif query.viewer.role is Role.specialist:
            branches.append(
                f"SELECT s.id {_FROM} WHERE l.id IN ({PLACED_BY_VIEWER}) AND l.visibility = 'confidential'"
                f" AND ST_DWithin(l.public_point::geography, {_ORIGIN}::geography, %(radius)s)"
            )
    if query.include_covering:
        # When the bound holds, a service on the first page is within it, hence in the first branch
        # already (covering or not); one located farther, or nowhere (sorted last), cannot be on it.
        # The two branches are then skipped: a one-time filter, so their scans never run.
        needed = "NOT (SELECT holds FROM bound)" if radius != "%(radius)s" else "true"
        branches.append(f"SELECT s.id {_FROM} WHERE {needed} AND s.covers_national")
        # Fenced: left to itself the planner ANDs this small GiST scan with the bitmap of a whole
        # specialism (a tenth of the directory), which costs ten times the rest of the search.
        covering = f"SELECT * FROM service WHERE {needed} AND ST_Covers(coverage, {_ORIGIN}) OFFSET 0"
        branches.append(f"SELECT s.id FROM ({covering}) s {JOINS} WHERE true")
    return branches


# The first page of a search near a point does not need every service within the radius: any `limit`
# of them have sort keys whose largest bounds the key of the page's last row. A service whose key is
# within that bound lies within it too, give or take the rounding of its distance — half a metre, or
# 500 m when rounded to the kilometre — so the radius shrinks to the bound plus 501 m. (Locations the
# viewer sees exactly have their own branch, see above.) The `limit` are taken, nearest first, among
# the BOUND_SCAN search points nearest the origin (a KNN scan of their own index that stops there; the
# specialisms are judged on the points, before any join): a selective filter (a rare specialism or
# language, away_from) would otherwise walk the whole directory looking for `limit` that pass. Any
# `limit` rows that pass bound the page, so the bound holds whichever are found; it holds only when
# `limit` of those pass the filters within the radius, otherwise the radius stays: exact either way.
BOUND_SCAN = 2000
_BOUND = f"""bound AS (
    SELECT CASE WHEN count(*) FILTER (WHERE candidate) < %(limit)s THEN %(radius)s::float8
                ELSE least(%(radius)s::float8, max(key) + 501) END AS radius,
           count(*) FILTER (WHERE candidate) >= %(limit)s AS holds
      FROM (SELECT ({_distance_sql()})::float8 AS key,
                   ST_DWithin(l.public_point::geography, {_ORIGIN}::geography, %(radius)s) AS candidate
              FROM (SELECT service_id, specialisms, geog <-> {_ORIGIN}::geography AS knn FROM search_point
                     ORDER BY knn LIMIT {BOUND_SCAN}) p
              JOIN service s ON s.id = p.service_id AND {{specialisms}}
              JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL
              JOIN organisation o ON o.id = s.organisation_id
              LEFT JOIN commune lc ON lc.code = l.commune_code
              LEFT JOIN departement d ON d.code = lc.departement_code
             WHERE {{where}}
             ORDER BY p.knn  -- the scan's own order: rows stream, and it stops at the limit
             LIMIT %(limit)s) nearest
)"""


def _params(query: Query, now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {
        **query.filters.params(),
        **sql_params(query.viewer),
        "now": now,
        "radius": query.radius_m,
        "limit": query.limit + 1,
    }
    if query.origin:
        params.update(lon=query.origin.lon, lat=query.origin.lat)
    if query.bbox:
        params.update(
            min_lon=query.bbox.min_lon,
            min_lat=query.bbox.min_lat,
            max_lon=query.bbox.max_lon,
            max_lat=query.bbox.max_lat,
        )
    return params


async def search(conn: AsyncConnection, query: Query, *, now: datetime) -> Page:
    filters = query.filters.active()
    where = " AND ".join([_BASE, *(condition for _, condition in filters)])
    bounded = query.origin is not None and query.after is None
    branches = _geographic_branches(query, radius="(SELECT radius FROM bound)" if bounded else "%(radius)s")
    candidates = " UNION ".join(f"({branch} AND {where})" for branch in branches)
    if query.bbox is not None:
        # One branch, ordered by id: the page is its first `limit` after the cursor, so only those
        # are joined and rendered (a 0.1° box in a city holds hundreds of services).
        after = " AND s.id > %(after_id)s::uuid" if query.after else ""
        candidates = f"{candidates.removesuffix(')')}{after} ORDER BY s.id LIMIT %(limit)s)"
    params = _params(query, now)
    if query.origin is not None:
        # Services with no location sort last (distance = infinity), then stale after fresh, then id.
        sort = f"""SELECT coalesce(x.distance, 'Infinity') AS key, x.distance, x.stale
                     FROM (SELECT ({_distance_sql()})::float8 AS distance, {_STALE} AS stale) x"""
        keyset = "(sort.key, sort.stale, s.id) > (%(after_key)s::float8, %(after_stale)s::boolean, %(after_id)s::uuid)"
        order = "sort.key, sort.stale, s.id"
        key_columns = "sort.key, sort.stale, s.id"
        if query.after:
            params.update(after_key=query.after[0], after_stale=query.after[1], after_id=query.after[2])
    else:
        sort = "SELECT NULL::float8 AS key"
        keyset = "s.id > %(after_id)s::uuid"
        order = key_columns = "s.id"
        if query.after:
            params.update(after_id=query.after[0])
    feature = feature_sql(with_origin=query.origin is not None, match=_match_sql(query))
    statement = f"""
        WITH {_BOUND.format(where=where, specialisms=_specialisms(query, "p")) + "," if bounded else ""}
             candidate AS ({candidates})
        SELECT {feature}::text, {EXACT_CONFIDENTIAL}, {key_columns}
          FROM candidate c JOIN service s ON s.id = c.id {JOINS}
          CROSS JOIN LATERAL ({sort}) sort
         WHERE {keyset if query.after else "true"}
         ORDER BY {order}
         LIMIT %(limit)s
    """
    # Prepared as the connection says (psycopg's threshold; off behind PgBouncer < 1.21). Since the
    # bound's scan streams nearest first and stops, the generic plan of a search near a point is as
    # good as a custom one at 1, 30 and 200 km (median 36/30/30 ms against 59/40/41 ms unprepared on
    # 1M services), and it saves the planning of a long statement.
    rows = await (await _execute(conn, statement, params, prepare=None)).fetchall()
    has_next = len(rows) > query.limit
    rows = rows[: query.limit]
    last_key = _key(rows[-1][2:]) if has_next and rows else None
    empty_reason = None
    if not rows and query.after is None:
        empty_reason = await _explain_empty(conn, query, filters, params)
    return Page(
        features=[row[0] for row in rows],
        last_key=last_key,
        empty_reason=empty_reason,
        exact_confidential=[row[1] for row in rows if row[1] is not None],
    )


_NAMED = re.compile(r"%\((\w+)\)s")


@lru_cache(maxsize=1024)
def _positional(statement: str) -> tuple[str, tuple[str, ...]]:
    """The statement with PostgreSQL's $n placeholders, one per occurrence as psycopg numbers them,
    and the parameter name of each. psycopg caches this conversion only for statements under 4 kB and
    50 parameters; a search is longer, and parsing it again cost ~1.3 ms of CPU per request."""
    names: list[str] = []

    def number(match: re.Match[str]) -> str:
        names.append(match[1])
        return f"${len(names)}"

    return _NAMED.sub(number, statement), tuple(names)


async def _execute(
    conn: AsyncConnection, statement: str, params: dict[str, Any], *, prepare: bool | None = None
) -> AsyncRawCursor[Any]:
    text, names = _positional(statement)
    cursor = AsyncRawCursor(conn)
    await cursor.execute(text, [params[name] for name in names], prepare=prepare)
    return cursor


def _key(values: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(str(value) if isinstance(value, uuid.UUID) else value for value in values)


async def _explain_empty(
    conn: AsyncConnection, query: Query, filters: list[tuple[str, str]], params: dict[str, Any]
) -> dict[str, Any]:
    """Say why nothing came back, so a specialist can relax the right filter."""
    branches = _geographic_branches(query, specialisms=False)  # each filter is counted on its own
    candidates = " UNION ".join(f"({branch} AND {_BASE})" for branch in branches)
    counts = ", ".join(f"count(*) FILTER (WHERE {condition})" for _, condition in filters) or "0"
    row = await (
        await conn.execute(
            f"""WITH candidate AS ({candidates})
            SELECT count(*), {counts}
              FROM candidate c JOIN service s ON s.id = c.id {JOINS}""",
            params,
        )
    ).fetchone()
    assert row is not None
    total = int(row[0])
    if total == 0:
        scope = "in this area" if query.bbox else f"within {query.radius_m / 1000:g} km"
        covering = " or covering this place" if query.origin and query.include_covering else ""
        return {
            "code": "nothing_in_range",
            "candidates": 0,
            "detail": f"no listed service {scope}{covering}: widen the radius or the area",
        }
    per_filter = [{"name": name, "matching": int(count)} for (name, _), count in zip(filters, row[1:], strict=True)]
    blocking = [str(f["name"]) for f in per_filter if f["matching"] == 0]
    detail = f"{total} services are in range but none passes every filter; " + (
        f"none matches {', '.join(blocking)}" if blocking else "no single filter excludes them all: relax one"
    )
    return {"code": "filtered_out", "candidates": total, "filters": per_filter, "detail": detail}
