"""Territory queries. They run on a plain psycopg connection and build their JSON in PostGIS, returned
as text untouched by Python: these are hot read paths (DESIGN §6).

Resolution: the commune whose boundary covers the point; failing that (a point in a coastline gap
between commune polygons) the nearest commune within 2 km on the spheroid; otherwise none. Ties
between overlapping boundaries are broken by INSEE code so the answer is deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from psycopg import AsyncConnection

from .codes import commune_of
from .errors import OutsideFrance, UnknownTerritory
from .names import normalise

NEAREST_COMMUNE_MAX_M = 2000


class GeometryDetail(StrEnum):
    none = "none"
    simplified = "simplified"
    full = "full"


# The commune a (lon, lat) resolves to, as a LATERAL-able subquery yielding (code, match).
# UNION ALL + LIMIT 1 stops at the first branch that answers: the nearest-commune search only runs
# for points outside every boundary. KNN on geometry preselects candidates; the reported order uses
# the spheroid distance.
_COMMUNE_AT = f"""
    (SELECT c.code, 'inside' AS match FROM commune c
      WHERE ST_Covers(c.boundary, ST_SetSRID(ST_MakePoint({{lon}}, {{lat}}), 4326))
      ORDER BY c.code LIMIT 1)
    UNION ALL
    (SELECT n.code, 'nearest' FROM (
        SELECT c.code, ST_Distance(c.boundary::geography,
                                   ST_SetSRID(ST_MakePoint({{lon}}, {{lat}}), 4326)::geography) AS distance
          FROM commune c WHERE c.boundary IS NOT NULL
         ORDER BY c.boundary <-> ST_SetSRID(ST_MakePoint({{lon}}, {{lat}}), 4326) LIMIT 8) n
      WHERE n.distance <= {NEAREST_COMMUNE_MAX_M} ORDER BY n.distance, n.code LIMIT 1)
    LIMIT 1
"""


def region_boundary(near: str | None = None) -> str:
    """SQL: the boundary of the région `r`, which the sources do not give: the union of its départements'
    (NULL for a région without any). `near`, a geometry expression (SRID 4326), limits the union to the
    départements whose box meets it: what a map tile needs of a région, at a fraction of the cost.
    The one definition of a région's territory (the OGC `regions` collection and the map tiles)."""
    within = f" AND rd.boundary && {near}" if near else ""
    return f"(SELECT ST_Union(rd.boundary) FROM departement rd WHERE rd.region_code = r.code{within})"


_RESOLUTION_JSON = """
    json_build_object(
        'commune', json_build_object('code', c.code, 'name', c.name),
        'departement', json_build_object('code', d.code, 'name', d.name),
        'region', json_build_object('code', r.code, 'name', r.name),
        'collectivite', json_build_object('code', k.code, 'name', k.name),
        'crip', (SELECT json_build_object('id', o.id, 'name', o.name) FROM organisation o
                  WHERE o.kind = 'crip' AND o.collectivite_code = k.code),
        'match', hit.match)
"""

_RESOLUTION_JOINS = """
    JOIN commune c ON c.code = hit.code
    JOIN departement d ON d.code = c.departement_code
    JOIN region r ON r.code = d.region_code
    JOIN collectivite k ON k.code = c.collectivite_code
"""

_RESOLVE_ONE = (
    f"SELECT {_RESOLUTION_JSON}::text FROM "
    f"({_COMMUNE_AT.format(lon='%(lon)s::float8', lat='%(lat)s::float8')}) hit {_RESOLUTION_JOINS}"
)

_RESOLVE_MANY = f"""
    SELECT coalesce(json_agg(resolved.doc ORDER BY q.i), '[]')::text
      FROM unnest(%(lons)s::float8[], %(lats)s::float8[]) WITH ORDINALITY AS q(lon, lat, i)
      LEFT JOIN LATERAL (
          SELECT {_RESOLUTION_JSON} AS doc
            FROM ({_COMMUNE_AT.format(lon="q.lon", lat="q.lat")}) hit {_RESOLUTION_JOINS}
      ) resolved ON true
"""


async def reference(conn: AsyncConnection) -> dict[str, object] | None:
    """Which official release the territories come from: its COG year, source, licence and load time.
    A commune code means something only within a release (communes merge every 1 January)."""
    row = await (
        await conn.execute(
            """SELECT reference_year, source, version, licence, loaded_at FROM reference_dataset
                WHERE name = 'territories'"""
        )
    ).fetchone()
    if row is None:
        return None
    year, source, version, licence, loaded_at = row
    return {
        "reference_year": year,
        "source": source,
        "version": version,
        "licence": licence,
        "loaded_at": loaded_at.isoformat(),
    }


async def resolve(conn: AsyncConnection, *, lon: float, lat: float) -> str:
    """JSON text of the territories and CRIP competent for a point; OutsideFrance when none."""
    row = await (await conn.execute(_RESOLVE_ONE, {"lon": lon, "lat": lat})).fetchone()
    if row is None:
        raise OutsideFrance("this point is neither in a French commune nor within 2 km of one")
    return str(row[0])


async def resolve_many(conn: AsyncConnection, points: Sequence[tuple[float, float]]) -> str:
    """JSON text of an array with one resolution (or null) per (lon, lat), in order."""
    lons = [lon for lon, _ in points]
    lats = [lat for _, lat in points]
    return await _scalar(conn, _RESOLVE_MANY, {"lons": lons, "lats": lats})


async def _scalar(conn: AsyncConnection, query: str, params: dict[str, object]) -> str:
    row = await (await conn.execute(query, params)).fetchone()
    assert row is not None, "aggregate queries always return one row"
    return str(row[0])


def _geometry_sql(detail: GeometryDetail, alias: str) -> str:
    if detail is GeometryDetail.none:
        return "NULL::json"
    column = "boundary_simplified" if detail is GeometryDetail.simplified else "boundary"
    return f"ST_AsGeoJSON({alias}.{column}, 6)::json"


def _departement_feature(detail: GeometryDetail) -> str:
    return f"""
    json_build_object(
        'type', 'Feature', 'id', d.code, 'geometry', {_geometry_sql(detail, "d")},
        'properties', json_build_object(
            'code', d.code, 'name', d.name,
            'region', json_build_object('code', r.code, 'name', r.name),
            'seat', json_build_object('code', s.code, 'name', s.name),
            'collectivites', (SELECT json_agg(json_build_object('code', k.code, 'name', k.name) ORDER BY k.code)
                                FROM collectivite k
                               WHERE k.code IN (SELECT DISTINCT collectivite_code FROM commune
                                                 WHERE departement_code = d.code))))
    """


def _collectivite_feature(detail: GeometryDetail) -> str:
    return f"""
    json_build_object(
        'type', 'Feature', 'id', k.code, 'geometry', {_geometry_sql(detail, "k")},
        'properties', json_build_object(
            'code', k.code, 'name', k.name, 'kind', k.kind,
            'region', json_build_object('code', r.code, 'name', r.name),
            'seat', json_build_object('code', s.code, 'name', s.name),
            'departements', (SELECT json_agg(DISTINCT departement_code ORDER BY departement_code)
                               FROM commune WHERE collectivite_code = k.code),
            'crip', (SELECT json_build_object('id', o.id, 'name', o.name) FROM organisation o
                      WHERE o.kind = 'crip' AND o.collectivite_code = k.code)))
    """


_DEPARTEMENT_FROM = """
    FROM departement d JOIN region r ON r.code = d.region_code JOIN commune s ON s.code = d.seat_commune_code
"""
_COLLECTIVITE_FROM = """
    FROM collectivite k JOIN region r ON r.code = k.region_code JOIN commune s ON s.code = k.seat_commune_code
"""


async def list_departements(
    conn: AsyncConnection, *, after: str | None, limit: int, detail: GeometryDetail
) -> list[tuple[str, str]]:
    """(code, feature JSON) of up to `limit` départements after `after`, by code."""
    cursor = await conn.execute(
        f"""SELECT d.code, {_departement_feature(detail)}::text {_DEPARTEMENT_FROM}
             WHERE %(after)s::text IS NULL OR d.code > %(after)s::text ORDER BY d.code LIMIT %(limit)s""",
        {"after": after, "limit": limit},
    )
    return [(row[0], row[1]) for row in await cursor.fetchall()]


async def get_departement(conn: AsyncConnection, code: str, *, detail: GeometryDetail) -> str:
    cursor = await conn.execute(
        f"SELECT {_departement_feature(detail)}::text {_DEPARTEMENT_FROM} WHERE d.code = %(code)s::text",
        {"code": code},
    )
    row = await cursor.fetchone()
    if row is None:
        raise UnknownTerritory(f"no département with code {code!r}")
    return str(row[0])


async def list_collectivites(
    conn: AsyncConnection, *, after: str | None, limit: int, detail: GeometryDetail
) -> list[tuple[str, str]]:
    cursor = await conn.execute(
        f"""SELECT k.code, {_collectivite_feature(detail)}::text {_COLLECTIVITE_FROM}
             WHERE %(after)s::text IS NULL OR k.code > %(after)s::text ORDER BY k.code LIMIT %(limit)s""",
        {"after": after, "limit": limit},
    )
    return [(row[0], row[1]) for row in await cursor.fetchall()]


async def get_collectivite(conn: AsyncConnection, code: str, *, detail: GeometryDetail) -> str:
    cursor = await conn.execute(
        f"SELECT {_collectivite_feature(detail)}::text {_COLLECTIVITE_FROM} WHERE k.code = %(code)s::text",
        {"code": code},
    )
    row = await cursor.fetchone()
    if row is None:
        raise UnknownTerritory(f"no collectivité with code {code!r}")
    return str(row[0])


_COMMUNE_FROM = """
    FROM commune c JOIN departement d ON d.code = c.departement_code JOIN collectivite k ON k.code = c.collectivite_code
"""

_COMMUNE_JSON = """
    json_build_object(
        'code', c.code, 'name', c.name, 'postal_codes', c.postal_codes, 'population', c.population,
        'departement', json_build_object('code', d.code, 'name', d.name),
        'collectivite', json_build_object('code', k.code, 'name', k.name),
        'point', ST_AsGeoJSON(c.point, 6)::json)
"""


async def search_communes(conn: AsyncConnection, *, query: str, departement: str | None, limit: int) -> str:
    """JSON array of communes matching a name (accent- and case-insensitive, word prefixes) or a
    postal code (exact), best match first, then by population."""
    if query.isdigit() and len(query) == 5:
        statement = f"""
            SELECT coalesce(json_agg(doc ORDER BY pop DESC NULLS LAST, code), '[]')::text FROM (
                SELECT {_COMMUNE_JSON} AS doc, c.population AS pop, c.code {_COMMUNE_FROM}
                 WHERE c.postal_codes @> ARRAY[%(q)s::varchar]
                   AND (%(dep)s::text IS NULL OR c.departement_code = %(dep)s::text)
                 ORDER BY c.population DESC NULLS LAST, c.code LIMIT %(limit)s) m"""
        params: dict[str, object] = {"q": query, "dep": departement, "limit": limit}
    else:
        name = normalise(query)
        if not name:
            return "[]"
        # The normalised name holds only [a-z0-9 ]: nothing to escape in the LIKE patterns.
        statement = f"""
            SELECT coalesce(json_agg(doc ORDER BY exact DESC, prefix DESC, pop DESC NULLS LAST, code), '[]')::text
              FROM (
                SELECT {_COMMUNE_JSON} AS doc, c.search_name = %(name)s::text AS exact,
                       c.search_name LIKE %(prefix)s::text AS prefix, c.population AS pop, c.code {_COMMUNE_FROM}
                 WHERE (c.search_name LIKE %(prefix)s::text OR c.search_name LIKE %(inner)s::text)
                   AND (%(dep)s::text IS NULL OR c.departement_code = %(dep)s::text)
                 ORDER BY c.search_name = %(name)s::text DESC, c.search_name LIKE %(prefix)s::text DESC,
                          c.population DESC NULLS LAST, c.code
                 LIMIT %(limit)s) m"""
        params = {"name": name, "prefix": name + "%", "inner": "% " + name + "%", "dep": departement, "limit": limit}
    return await _scalar(conn, statement, params)


async def commune_point(conn: AsyncConnection, code: str) -> tuple[float, float] | None:
    """(lon, lat) of a commune (an arrondissement code counts for its commune), or None if unknown."""
    row = await (
        await conn.execute(
            "SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %(code)s::text AND point IS NOT NULL",
            {"code": commune_of(code)},
        )
    ).fetchone()
    return (row[0], row[1]) if row else None


async def postal_code_point(conn: AsyncConnection, postal_code: str) -> tuple[float, float] | None:
    """(lon, lat) of the most populous commune served by a postal code, or None if unknown."""
    row = await (
        await conn.execute(
            """SELECT ST_X(point), ST_Y(point) FROM commune
            WHERE postal_codes @> ARRAY[%(code)s::varchar] AND point IS NOT NULL
            ORDER BY population DESC NULLS LAST, code LIMIT 1""",
            {"code": postal_code},
        )
    ).fetchone()
    return (row[0], row[1]) if row else None


# --- checking codes that callers give ------------------------------------------------------------


class TerritoryKind(StrEnum):
    """The territories a body may name by INSEE code (the value is the table holding them)."""

    commune = "commune"
    departement = "departement"
    collectivite = "collectivite"
    region = "region"


async def unknown_codes(conn: AsyncConnection, kind: TerritoryKind, codes: Sequence[str]) -> list[str]:
    """The codes that name no territory of this kind, in the order given. The one check of territory
    codes every package uses (listings, organisations, cases, statistics filters)."""
    if not codes:
        return []
    table = TerritoryKind(kind).value  # allow-listed: the enum's values are table names
    rows = await (
        await conn.execute(f"SELECT code FROM {table} WHERE code = ANY(%(codes)s::text[])", {"codes": list(codes)})
    ).fetchall()
    found = {row[0] for row in rows}
    return [code for code in codes if code not in found]


async def has_boundary(conn: AsyncConnection, kind: TerritoryKind, code: str) -> bool | None:
    """Whether a territory has a boundary in the reference data; None when no territory has this
    code. (Four communes restored in 2025 have none.)"""
    table = TerritoryKind(kind).value  # allow-listed: the enum's values are table names
    row = await (
        await conn.execute(f"SELECT boundary IS NOT NULL FROM {table} WHERE code = %(code)s::text", {"code": code})
    ).fetchone()
    return None if row is None else bool(row[0])


async def commune_near(
    conn: AsyncConnection, code: str, *, lon: float, lat: float, within_m: float = NEAREST_COMMUNE_MAX_M
) -> tuple[str, str, bool] | None:
    """(code, name, whether the point lies in the commune or within `within_m` of it) for a commune
    code (an arrondissement counts for its commune); None when no commune has this code. A commune
    without a boundary accepts any point: nothing to test it against."""
    canonical = commune_of(code)
    row = await (
        await conn.execute(
            """SELECT c.code, c.name, c.boundary IS NULL OR ST_DWithin(
                      c.boundary::geography,
                      ST_SetSRID(ST_MakePoint(%(lon)s::float8, %(lat)s::float8), 4326)::geography,
                      %(within)s::float8)
                 FROM commune c WHERE c.code = %(code)s::text""",
            {"code": canonical, "lon": lon, "lat": lat, "within": within_m},
        )
    ).fetchone()
    return (str(row[0]), str(row[1]), bool(row[2])) if row else None
