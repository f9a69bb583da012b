"""The collections published as OGC API Features (api/routes/ogc.py serves them): the public directory
(`services`, a point per listed service) and the territories (`regions`, `departements`,
`collectivites`, `communes`, their boundaries).

What each collection is, its queryables and the SQL of its features live here; the HTTP shapes
(links, parameters, media types) live in the route module.

Confidentiality. A service is published as a viewer who may see no safe house sees it, whoever asks
(directory.access.LISTED_SERVICE says why): its geometry is its location's `public_point` (the
commune's point for a confidential location), the bbox filter reads `public_point` only, and the order
(by id) and every count read nothing else — so no page, count or order can depend on a safe house's
exact point. A confidential location shows neither address nor exact precision, only the commune and
its front-door contact. The properties are the search feature's as a partner sees it (flattened for
GIS: one column per value), nothing more.

Features are built by PostgreSQL (DESIGN §6): one JSON text per row, passed through untouched.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import re
import weakref
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from psycopg import AsyncConnection

from geo.models import CollectiviteKind
from geo.territories import region_boundary

from .access import LISTED_SERVICE, PUBLISHED_POINT, front_door, published_detail
from .errors import NotFound
from .models import Audience, Capacity, Channel, ServiceStatus
from .search import JOINS, BBox
from .taxonomy import SLUGS

# --- value syntaxes (JSON Schema), shared by the queryables and the feature ids ---------------------

COMMUNE_CODE = r"^[0-9][0-9AB][0-9]{3}$"
DEPARTEMENT_CODE = r"^(?:0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-46])$"
COLLECTIVITE_CODE = r"^[0-9]{1,3}[A-Z]{1,2}$"
REGION_CODE = r"^[0-9]{2}$"
UUID = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"


@dataclass(frozen=True)
class Queryable:
    """A property features can be filtered on, as `name=value` (OGC API Features Part 3,
    queryables-query-parameters): `schema` is the JSON Schema of a value (an enum or a pattern: the
    whole rule), `condition` the SQL that keeps the features matching `%(value)s`."""

    name: str
    title: str
    description: str
    schema: dict[str, Any]
    condition: str


def _enum(values: Any) -> dict[str, Any]:
    return {"type": "string", "enum": sorted(str(value) for value in values)}


def _pattern(pattern: str, **extra: Any) -> dict[str, Any]:
    return {"type": "string", "pattern": pattern, **extra}


@dataclass(frozen=True)
class Collection:
    id: str
    title: str
    description: str
    geometry: str  # the GeoJSON type of every non-null geometry
    id_pattern: str  # the syntax of a feature id
    queryables: tuple[Queryable, ...] = ()
    # The temporal property `datetime` filters on (None: the features have no temporal geometry).
    temporal: str | None = None

    def queryable(self, name: str) -> Queryable | None:
        return next((q for q in self.queryables if q.name == name), None)


# --- services ---------------------------------------------------------------------------------------

# What a viewer who may see no safe house sees of a location (alias `l`): access.published_detail
# (the exact address and precision of a public one; of a confidential one, only its commune and front
# door), at access.PUBLISHED_POINT.
_SERVICE_FROM = "FROM service s " + JOINS
_SERVICE_FEATURE = f"""json_build_object(
    'type', 'Feature',
    'id', s.id,
    'geometry', CASE WHEN l.id IS NULL THEN NULL ELSE ST_AsGeoJSON({PUBLISHED_POINT}, 6)::json END,
    'properties', json_build_object(
        'name', s.name,
        'organisation_id', o.id, 'organisation_name', o.name, 'organisation_kind', o.kind,
        'specialisms', s.specialisms, 'audiences', s.audiences, 'age_min', s.age_min, 'age_max', s.age_max,
        'genders', s.genders, 'languages', s.languages, 'channels', s.channels,
        'location_precision', CASE WHEN l.id IS NOT NULL
                                   THEN coalesce({published_detail("l.point_precision")}, 'commune') END,
        'commune_code', lc.code, 'commune_name', lc.name, 'departement_code', lc.departement_code,
        'address', {published_detail("l.address")},
        'front_door_phone', {front_door("l.front_door_phone")},
        'front_door_email', {front_door("l.front_door_email")},
        'phone', s.phone, 'email', s.email, 'website', s.website,
        'status', s.status,
        'capacity', s.capacity, 'capacity_places', s.capacity_places, 'capacity_as_of', s.capacity_as_of,
        'last_verified_at', s.last_verified_at,
        'demo', s.demo))"""

SERVICES = Collection(
    id="services",
    title="Services",
    description=(
        "The public directory: one point per listed service, at its location's public point (a confidential "
        "location — a safe house — stands at its commune's point, with no address, whoever asks); a service "
        "without a location (a phone line, an online service) has no geometry and never matches a bbox. "
        "`datetime` filters on `last_verified_at`, when the service's organisation last confirmed the listing "
        "(a service never verified matches any `datetime`)."
    ),
    geometry="Point",
    id_pattern=UUID,
    temporal="s.last_verified_at",
    queryables=(
        Queryable(
            "specialism",
            "Specialism",
            "Services offering this specialism (one of their `specialisms`).",
            _enum(SLUGS),
            "s.specialisms && ARRAY[%(value)s]::varchar[]",
        ),
        Queryable(
            "audience",
            "Audience",
            "Services for this public (one of their `audiences`).",
            _enum(Audience),
            "%(value)s = ANY(s.audiences)",
        ),
        Queryable(
            "language",
            "Language",
            "Services working in this language, ISO 639 (one of their `languages`).",
            _pattern(r"^[a-z]{2,3}$"),
            "%(value)s = ANY(s.languages)",
        ),
        Queryable(
            "channel",
            "Channel",
            "Services reached this way (one of their `channels`).",
            _enum(Channel),
            "%(value)s = ANY(s.channels)",
        ),
        Queryable(
            "status",
            "Status",
            "`active` or `temporarily_closed` (suspended services are not listed).",
            _enum(status for status in ServiceStatus if status is not ServiceStatus.suspended),
            "s.status = %(value)s",
        ),
        Queryable("capacity", "Capacity", "The last known capacity state.", _enum(Capacity), "s.capacity = %(value)s"),
        Queryable(
            "commune_code",
            "Commune",
            "INSEE code of the commune where the service receives people (its organisation's seat without a location).",
            _pattern(COMMUNE_CODE),
            "lc.code = %(value)s",
        ),
        Queryable(
            "departement_code",
            "Département",
            "INSEE code of that commune's département.",
            _pattern(DEPARTEMENT_CODE),
            "lc.departement_code = %(value)s",
        ),
        Queryable(
            "organisation_id",
            "Organisation",
            "The organisation that runs the service.",
            _pattern(UUID, format="uuid"),
            "s.organisation_id = %(value)s::uuid",
        ),
    ),
)

# --- territories --------------------------------------------------------------------------------------

_REGION_CODE = Queryable("region_code", "Région", "INSEE code of the région.", _pattern(REGION_CODE), "")

REGIONS = Collection(
    id="regions",
    title="Régions",
    description="The 18 régions, their boundaries dissolved from their départements' (IGN ADMIN EXPRESS COG).",
    geometry="MultiPolygon",
    id_pattern=REGION_CODE,
)

DEPARTEMENTS = Collection(
    id="departements",
    title="Départements",
    description="The 101 départements and their boundaries (IGN ADMIN EXPRESS COG).",
    geometry="MultiPolygon",
    id_pattern=DEPARTEMENT_CODE,
    queryables=(dataclasses.replace(_REGION_CODE, condition="d.region_code = %(value)s"),),
)

COLLECTIVITES = Collection(
    id="collectivites",
    title="Collectivités",
    description=(
        "The 100 collectivités that run child protection (each with its CRIP) and their boundaries: a "
        "département's council, or a collectivité with special status (Métropole de Lyon, Corse, Alsace, Paris…)."
    ),
    geometry="MultiPolygon",
    id_pattern=COLLECTIVITE_CODE,
    queryables=(
        dataclasses.replace(_REGION_CODE, condition="k.region_code = %(value)s"),
        Queryable(
            "kind",
            "Kind",
            "`departement` (a département's council) or `special_status`.",
            _enum(CollectiviteKind),
            "k.kind = %(value)s",
        ),
    ),
)

COMMUNES = Collection(
    id="communes",
    title="Communes",
    description=(
        "The communes (INSEE COG) and their boundaries; the few the source gives no boundary have no geometry."
    ),
    geometry="MultiPolygon",
    id_pattern=COMMUNE_CODE,
    queryables=(
        Queryable(
            "departement_code",
            "Département",
            "INSEE code of the département.",
            _pattern(DEPARTEMENT_CODE),
            "c.departement_code = %(value)s",
        ),
        Queryable(
            "collectivite_code",
            "Collectivité",
            "Code of the collectivité that runs child protection there.",
            _pattern(COLLECTIVITE_CODE),
            "c.collectivite_code = %(value)s",
        ),
        dataclasses.replace(_REGION_CODE, condition="d.region_code = %(value)s"),
    ),
)

COLLECTIONS: dict[str, Collection] = {c.id: c for c in (SERVICES, REGIONS, DEPARTEMENTS, COLLECTIVITES, COMMUNES)}


# --- reading them -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Items:
    """What a page of items asks for. `interval` is (start, end), either open (None); an instant is
    (t, t). `after` is the last id of the previous page; `matched` the count that page carried."""

    bbox: BBox | None = None
    interval: tuple[datetime | None, datetime | None] | None = None
    filters: tuple[tuple[Queryable, str], ...] = ()
    limit: int = 100
    after: str | None = None
    matched: int | None = None


@dataclass(frozen=True)
class Page:
    features: list[str]
    number_matched: int | None  # None: more than MAX_COUNTED, not counted
    last_id: str | None  # set when another page follows


# numberMatched is counted up to this many features, and left out above (Part 1 allows it): counting
# a whole layer (a GIS panning over France) would cost more than the page it comes with.
MAX_COUNTED = 10_000


# The box as a geometry: a polygon, or a point or line when it has no width or height (ST_MakeEnvelope
# would collapse it into an empty polygon, and a box drawn on a point would find nothing there).
_ENVELOPE = (
    "ST_SetSRID(ST_MakeBox2D(ST_Point(%(min_lon)s::float8, %(min_lat)s::float8),"
    " ST_Point(%(max_lon)s::float8, %(max_lat)s::float8))::geometry, 4326)"
)


def _intersects(column: str) -> str:
    """Index-backed (`&&` on the GiST index of `column`), then exact."""
    return f"({column} && {_ENVELOPE} AND ST_Intersects({column}, {_ENVELOPE}))"


@dataclass(frozen=True)
class _Shape:
    """How a collection is read: its rows, key, geometry (for bbox) and feature JSON."""

    source: str  # FROM … (with its joins)
    key: str  # the feature id, also the keyset and order
    key_type: str  # its SQL type, for the cursor's value
    feature: str | None  # the feature's JSON (None: built apart, see regions)
    base: str = "true"  # which rows are features at all
    spatial: str | None = None  # the bbox condition on these rows


# A boundary as served: snapped to the 6 decimals GeoJSON carries by GEOS, which keeps it valid (rounded
# alone, Marseille's boundary crosses itself), at ~50 ms per 1,000 communes.
_BOUNDARY = "ST_AsGeoJSON(ST_Multi(ST_ReducePrecision({}, 0.000001)), 6)::json"

_TERRITORY_FROM = {
    "departements": "FROM departement d JOIN region r ON r.code = d.region_code",
    "collectivites": "FROM collectivite k JOIN region r ON r.code = k.region_code",
    "communes": "FROM commune c JOIN departement d ON d.code = c.departement_code",
}

_SHAPES: dict[str, _Shape] = {
    "services": _Shape(
        source=_SERVICE_FROM,
        key="s.id",
        key_type="uuid",
        feature=_SERVICE_FEATURE,
        base=LISTED_SERVICE,
        spatial=_intersects(PUBLISHED_POINT),  # never l.point (ix_location__public_point)
    ),
    "regions": _Shape(
        source="FROM region r",
        key="r.code",
        key_type="text",
        feature=None,
        # A région intersects the box when one of its départements does (its boundary is their union).
        spatial=f"EXISTS (SELECT 1 FROM departement rd WHERE rd.region_code = r.code AND {_intersects('rd.boundary')})",
    ),
    "departements": _Shape(
        source=_TERRITORY_FROM["departements"],
        key="d.code",
        key_type="text",
        feature=f"""json_build_object('type', 'Feature', 'id', d.code,
            'geometry', {_BOUNDARY.format("d.boundary")},
            'properties', json_build_object('code', d.code, 'name', d.name, 'region_code', r.code,
                                            'region_name', r.name, 'seat_commune_code', d.seat_commune_code))""",
        spatial=_intersects("d.boundary"),
    ),
    "collectivites": _Shape(
        source=_TERRITORY_FROM["collectivites"],
        key="k.code",
        key_type="text",
        feature=f"""json_build_object('type', 'Feature', 'id', k.code,
            'geometry', {_BOUNDARY.format("k.boundary")},
            'properties', json_build_object('code', k.code, 'name', k.name, 'kind', k.kind,
                'region_code', r.code, 'region_name', r.name,
                'departement_codes', ARRAY(SELECT DISTINCT kc.departement_code FROM commune kc
                                            WHERE kc.collectivite_code = k.code ORDER BY 1),
                'crip_id', crip.id, 'crip_name', crip.name))""",
        spatial=_intersects("k.boundary"),
    ),
    "communes": _Shape(
        source=_TERRITORY_FROM["communes"],
        key="c.code",
        key_type="text",
        feature=f"""json_build_object('type', 'Feature', 'id', c.code,
            'geometry', {_BOUNDARY.format("c.boundary")},
            'properties', json_build_object('code', c.code, 'name', c.name,
                'departement_code', c.departement_code, 'collectivite_code', c.collectivite_code,
                'region_code', d.region_code, 'population', c.population, 'postal_codes', c.postal_codes))""",
        spatial=_intersects("c.boundary"),
    ),
}
# The CRIP of a collectivité, for its feature (one per collectivité; none before `maillage seed`).
_CRIP_JOIN = " LEFT JOIN organisation crip ON crip.kind = 'crip' AND crip.collectivite_code = k.code"


def _conditions(collection: Collection, shape: _Shape, query: Items) -> tuple[list[str], dict[str, Any]]:
    conditions = [shape.base]
    params: dict[str, Any] = {}
    if query.bbox is not None and shape.spatial is not None:
        conditions.append(shape.spatial)
        params.update(query.bbox.__dict__)
    # A feature without a temporal value matches any `datetime` (Part 1, /req/core/fc-time-response):
    # territories, and a service never verified.
    if query.interval is not None and collection.temporal is not None:
        start, end = query.interval
        within = []
        if start is not None:
            within.append(f"{collection.temporal} >= %(start)s::timestamptz")
            params["start"] = start
        if end is not None:
            within.append(f"{collection.temporal} <= %(end)s::timestamptz")
            params["end"] = end
        if within:
            conditions.append(f"({collection.temporal} IS NULL OR ({' AND '.join(within)}))")
    for index, (queryable, value) in enumerate(query.filters):
        name = f"q{index}"
        conditions.append(queryable.condition.replace("%(value)s", f"%({name})s"))
        params[name] = value
    return conditions, params


def statements(collection: Collection, query: Items) -> tuple[str, str, dict[str, Any]]:
    """(the count, the page, their parameters) of a query on `collection`: the page in the order of the
    features' ids, one row more than asked (whether another page follows)."""
    shape = _SHAPES[collection.id]
    source = shape.source + (_CRIP_JOIN if collection.id == "collectivites" else "")
    conditions, params = _conditions(collection, shape, query)
    where = " AND ".join(conditions)
    after = f" AND {shape.key} > %(after)s::{shape.key_type}" if query.after is not None else ""
    feature = shape.feature or "NULL::json"
    count = f"SELECT count(*) FROM (SELECT 1 {shape.source} WHERE {where} LIMIT {MAX_COUNTED + 1}) counted"
    page = f"""SELECT {shape.key}::text, {feature}::text {source}
                WHERE {where}{after} ORDER BY {shape.key} LIMIT %(fetch)s"""
    return count, page, {**params, "after": query.after, "fetch": query.limit + 1}


async def items(conn: AsyncConnection, collection: Collection, query: Items) -> Page:
    """A page of `collection`'s features, in the order of their ids, with the number of features that
    match the query: counted on the first page up to MAX_COUNTED (None above), carried by later pages
    in their cursor."""
    count, page, params = statements(collection, query)
    rows = await (await conn.execute(page, params)).fetchall()
    has_next = len(rows) > query.limit
    rows = rows[: query.limit]
    matched = query.matched
    if query.after is None:
        if has_next:
            row = await (await conn.execute(count, params)).fetchone()
            assert row is not None
            matched = int(row[0]) if row[0] <= MAX_COUNTED else None
        else:
            matched = len(rows)  # the whole answer is on this page
    if _SHAPES[collection.id].feature is None:
        regions = await region_features(conn)
        features = [regions[code] for code, _ in rows]
    else:
        features = [feature_json for _, feature_json in rows]
    return Page(features=features, number_matched=matched, last_id=rows[-1][0] if has_next and rows else None)


async def item(conn: AsyncConnection, collection: Collection, feature_id: str) -> str:
    """One feature of `collection`, or NotFound (an id of another syntax names nothing either)."""
    shape = _SHAPES[collection.id]
    if re.fullmatch(collection.id_pattern, feature_id) is None:
        raise NotFound(f"no feature {collection.id}/… with this id")
    if shape.feature is None:
        regions = await region_features(conn)
        if feature_id not in regions:
            raise NotFound("no région with this code")
        return regions[feature_id]
    source = shape.source + (_CRIP_JOIN if collection.id == "collectivites" else "")
    row = await (
        await conn.execute(
            f"SELECT {shape.feature}::text {source} WHERE {shape.base} AND {shape.key} = %(id)s::{shape.key_type}",
            {"id": feature_id},
        )
    ).fetchone()
    if row is None:
        raise NotFound(f"no feature {collection.id}/… with this id")
    return str(row[0])


async def extent(conn: AsyncConnection) -> list[float]:
    """The bounding box of France (every territory, overseas included), [minLon, minLat, maxLon, maxLat],
    rounded outwards to 6 decimals: what every collection lies in. From the 101 départements, not the
    features (a million services would be a scan per request)."""
    row = await (
        await conn.execute(
            """SELECT floor(ST_XMin(e) * 1e6) / 1e6, floor(ST_YMin(e) * 1e6) / 1e6,
                      ceil(ST_XMax(e) * 1e6) / 1e6, ceil(ST_YMax(e) * 1e6) / 1e6
                 FROM (SELECT ST_Extent(boundary) AS e FROM departement) x"""
        )
    ).fetchone()
    if row is None or row[0] is None:
        return [-180.0, -90.0, 180.0, 90.0]  # no territories loaded: the whole world, honestly
    return [float(value) for value in row]


# --- régions: dissolved once, not per request ---------------------------------------------------------


@dataclass
class _RegionCache:
    version: str = ""
    features: dict[str, str] = field(default_factory=dict)
    # One rebuild at a time per event loop: concurrent requests that see a new version wait for it,
    # not redo it (an asyncio lock belongs to one loop; a process may run several, tests do).
    locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = field(
        default_factory=weakref.WeakKeyDictionary
    )


_regions = _RegionCache()

# Which version of the départements and régions the cache was built from: every row's xmin, which any
# write to it changes (seed, `maillage territories refresh`). 119 rows: well under a millisecond.
_TERRITORY_VERSION = """SELECT string_agg(t.v, ',' ORDER BY t.v) FROM (
    SELECT 'd' || code || ':' || xmin::text AS v FROM departement
    UNION ALL SELECT 'r' || code || ':' || xmin::text FROM region) t"""


async def region_features(conn: AsyncConnection) -> dict[str, str]:
    """Each région's feature by code. A région has no boundary of its own: it is the union of its
    départements' (geo.territories.region_boundary; ~350 ms for the 18), computed when the départements
    or régions change and kept for this process."""
    row = await (await conn.execute(_TERRITORY_VERSION)).fetchone()
    version = hashlib.sha256(str(row[0] if row else "").encode()).hexdigest()
    if version == _regions.version:
        return _regions.features
    lock = _regions.locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())
    async with lock:
        if version == _regions.version:
            return _regions.features
        rows = await (
            await conn.execute(
                f"""SELECT r.code, json_build_object('type', 'Feature', 'id', r.code,
                       'geometry', {_BOUNDARY.format(region_boundary())},
                       'properties', json_build_object('code', r.code, 'name', r.name,
                           'departement_codes', ARRAY(SELECT d.code FROM departement d
                                                       WHERE d.region_code = r.code ORDER BY d.code)))::text
                     FROM region r"""
            )
        ).fetchall()
        _regions.features = {str(code): str(feature) for code, feature in rows}
        _regions.version = version
    return _regions.features
