"""Services: search near a place for a need, and read one service."""

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from directory import search, services, stats
from directory.models import Audience, Channel, Gender
from directory.schemas import SpecialismSlug, Text, Timestamp
from geo import territories
from geo.codes import commune_of
from geo.territories import TerritoryKind

from ..audit import journal_exact_reads
from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import InvalidParameter, problem_responses
from ..etags import documented, etag
from ..pagination import Pagination, list_scope
from ..params import LATITUDE, LONGITUDE, Cursor, Limit
from ..responses import GeoJSONText, feature_collection
from ..schemas import ServiceCollection, ServiceDetail
from .listings import service_links

router = APIRouter(prefix="/v1", tags=["services"])

MAX_RADIUS_KM = 200
MAX_BBOX_DEGREES = 10


# Plain decimals (no exponent, no inf/nan, no spaces) within a longitude's ±180 and a latitude's ±90:
# the pattern the document states is the whole rule for one coordinate.
_FRACTION = r"(?:\.[0-9]*)?"
_LON = rf"-?(?:180(?:\.0*)?|(?:1[0-7][0-9]|[0-9]{{1,2}}){_FRACTION}|\.[0-9]+)"
_LAT = rf"-?(?:90(?:\.0*)?|[0-8]?[0-9]{_FRACTION}|\.[0-9]+)"
# The order of the corners and the 10° span relate the numbers to each other, which no schema can say.
BBOX = rf"^{_LON},{_LAT},{_LON},{_LAT}$"


def _bbox(value: str) -> search.BBox:
    if not re.fullmatch(BBOX, value):
        raise InvalidParameter(
            "bbox", "expected minLon,minLat,maxLon,maxLat: four decimal numbers, longitudes ±180, latitudes ±90"
        )
    min_lon, min_lat, max_lon, max_lat = (float(part) for part in value.split(","))
    if min_lon >= max_lon or min_lat >= max_lat:
        raise InvalidParameter("bbox", "the box is inverted or empty: minLon < maxLon and minLat < maxLat")
    if max_lon - min_lon > MAX_BBOX_DEGREES or max_lat - min_lat > MAX_BBOX_DEGREES:
        raise InvalidParameter("bbox", f"the box may span at most {MAX_BBOX_DEGREES} degrees each way")
    return search.BBox(min_lon, min_lat, max_lon, max_lat)


MAX_AWAY_KM = 1000
MAX_OUTSIDE = 20
_COMMUNE = r"[0-9][0-9AB][0-9]{3}"
_COLLECTIVITE = r"[0-9]{1,3}[A-Z]{1,2}"
_DEPARTEMENT = r"(?:0[1-9]|1[0-9]|2[1-9AB]|[3-8][0-9]|9[0-5]|97[1-46])"
# A commune, département or collectivité code, or lon,lat (the order of bbox and GeoJSON).
AWAY_FROM = rf"^(?:{_COMMUNE}|{_DEPARTEMENT}|{_COLLECTIVITE}|{_LON},{_LAT})$"
OUTSIDE = rf"^(?:{_DEPARTEMENT}|{_COLLECTIVITE})$"


async def _away(conn: ReaderDep, away_from: str | None, min_distance_km: float | None) -> search.Away | None:
    if away_from is None and min_distance_km is None:
        return None
    if away_from is None:
        raise InvalidParameter("away_from", "min_distance_km needs a place to keep away from")
    if min_distance_km is None:
        raise InvalidParameter("min_distance_km", "say how far from away_from, in km")
    if not re.fullmatch(AWAY_FROM, away_from):
        raise InvalidParameter(
            "away_from",
            "expected a commune, département or collectivité code, or lon,lat (longitude ±180, latitude ±90)",
        )
    min_m = min_distance_km * 1000
    if "," in away_from:
        lon, lat = (float(part) for part in away_from.split(","))
        return search.Away(min_m=min_m, point=search.Point(lon=lon, lat=lat))
    # A département's code first: "2A" has a collectivité code's shape but names Corse-du-Sud.
    kinds: tuple[TerritoryKind, ...] = (TerritoryKind.departement, TerritoryKind.collectivite)
    if re.fullmatch(_COMMUNE, away_from):
        away_from, kinds = commune_of(away_from), (TerritoryKind.commune,)  # an arrondissement: its city
    for kind in kinds:
        found = await territories.has_boundary(conn, kind, away_from)
        if found is None:
            continue
        if not found:
            # Measuring from its centre would not be "any point of its territory": refuse, never guess.
            raise InvalidParameter(
                "away_from", f"this {kind.value} has no boundary in the reference data: give lon,lat"
            )
        return search.Away(min_m=min_m, territory=(kind.value, away_from))
    raise InvalidParameter("away_from", f"no {' or '.join(kind.value for kind in kinds)} with this code")


async def _outside(conn: ReaderDep, codes: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(départements, collectivités) named by `outside`; a code is a département's when one has it."""
    unknown_departements = set(await territories.unknown_codes(conn, TerritoryKind.departement, codes))
    maybe_collectivites = [code for code in codes if code in unknown_departements]
    unknown = await territories.unknown_codes(conn, TerritoryKind.collectivite, maybe_collectivites)
    if unknown:
        raise InvalidParameter("outside", f"item {codes.index(unknown[0])} is not a département or collectivité code")
    departements = tuple(sorted({code for code in codes if code not in unknown_departements}))
    return departements, tuple(sorted(set(maybe_collectivites)))


async def _origin(
    conn: ReaderDep, lat: float | None, lon: float | None, commune: str | None, postal_code: str | None
) -> search.Point | None:
    if (lat is None) != (lon is None):
        raise InvalidParameter("lon" if lon is None else "lat", "lat and lon go together")
    if commune is not None:
        point = await territories.commune_point(conn, commune)
        if point is None:
            raise InvalidParameter("commune", "no commune with this INSEE code")
        return search.Point(*point)
    if postal_code is not None:
        point = await territories.postal_code_point(conn, postal_code)
        if point is None:
            raise InvalidParameter("postal_code", "no commune with this postal code")
        return search.Point(*point)
    if lat is not None and lon is not None:
        return search.Point(lon=lon, lat=lat)
    return None


async def search_query(
    request: Request,
    conn: ReaderDep,
    principal: AnyRole,
    lat: Annotated[float | None, LATITUDE] = None,
    lon: Annotated[float | None, LONGITUDE] = None,
    commune: Annotated[str | None, Query(pattern=r"^[0-9][0-9AB][0-9]{3}$", description="Origin: INSEE code.")] = None,
    postal_code: Annotated[str | None, Query(pattern=r"^[0-9]{5}$", description="Origin: postal code.")] = None,
    bbox: Annotated[
        str | None,
        Query(
            max_length=100,
            description="minLon,minLat,maxLon,maxLat instead of an origin (≤ 10°).",
            json_schema_extra={"pattern": BBOX},
        ),
    ] = None,
    radius_km: Annotated[float, Query(gt=0, le=MAX_RADIUS_KM, allow_inf_nan=False)] = 30,
    specialism: Annotated[
        list[SpecialismSlug] | None, Query(max_length=16, description="Specialism slug; repeatable.")
    ] = None,
    match: Annotated[Literal["any", "all"], Query(description="Whether a service needs any or all of them.")] = "any",
    audience: Audience | None = None,
    age: Annotated[int | None, Query(ge=0, le=99, description="The child's age in years.")] = None,
    gender: Gender | None = None,
    language: Annotated[
        str | None, Query(pattern=r"^[a-z]{2,3}$", description="ISO 639 code, e.g. fr, en, ro.")
    ] = None,
    channel: Channel | None = None,
    open_now: Annotated[bool, Query(description="Only services open now (in their own time zone).")] = False,
    open_at: Annotated[
        Timestamp | None, Query(description="Only services open at this RFC 3339 time (with its offset).")
    ] = None,
    available: Annotated[bool, Query(description="Exclude services whose capacity is full.")] = False,
    collective: Annotated[str | None, Query(pattern=r"^[a-z0-9-]{2,64}$")] = None,
    q: Annotated[
        Text | None, Query(min_length=2, max_length=200, description="Full text, French, accents ignored.")
    ] = None,
    include_covering: Annotated[
        bool, Query(description="Also services located farther whose area covers the origin.")
    ] = True,
    away_from: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Éloignement: a place of danger to keep away from — a commune, département or "
            "collectivité code (any point of its territory counts; an arrondissement means its city) or "
            "lon,lat. Needs min_distance_km. Judged on where a service receives people (a safe house: any "
            "point of its commune); services without a location stay.",
            json_schema_extra={"pattern": AWAY_FROM},
        ),
    ] = None,
    min_distance_km: Annotated[
        float | None,
        Query(gt=0, le=MAX_AWAY_KM, allow_inf_nan=False, description="How far from away_from, at least."),
    ] = None,
    outside: Annotated[
        list[str] | None,
        Query(
            max_length=MAX_OUTSIDE,
            description="Only services received outside these départements or collectivités (by their "
            "location's commune); services without a location stay. Repeatable.",
            json_schema_extra={"items": {"type": "string", "pattern": OUTSIDE}, "uniqueItems": True},
        ),
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> search.Query:
    modes = [
        name
        for name, given in (
            ("lat/lon", lat is not None or lon is not None),
            ("commune", commune),
            ("postal_code", postal_code),
            ("bbox", bbox),
        )
        if given
    ]
    if len(modes) != 1:
        raise InvalidParameter(
            "lat",
            "give exactly one origin: lat and lon, commune, postal_code, or bbox"
            + (f" (got {', '.join(modes)})" if modes else ""),
        )
    if open_now and open_at is not None:
        raise InvalidParameter("open_at", "use open_now or open_at, not both")
    box = _bbox(bbox) if bbox is not None else None
    origin = await _origin(conn, lat, lon, commune, postal_code)
    away = await _away(conn, away_from, min_distance_km)
    outside = outside or []
    for index, code in enumerate(outside):
        if not re.fullmatch(OUTSIDE, code):
            raise InvalidParameter("outside", f"item {index} is not a département or collectivité code")
    if len(set(outside)) != len(outside):
        raise InvalidParameter("outside", "codes must not repeat")
    outside_departements, outside_collectivites = await _outside(conn, outside)
    page = Pagination(request, list_scope("services/search", request), 1 if box else 3, limit=limit, cursor=cursor)
    filters = search.Filters(
        specialisms=tuple(sorted(set(specialism or ()))),
        match_all=match == "all",
        audience=audience,
        age=age,
        gender=gender,
        language=language,
        channel=channel,
        open_at=datetime.now(UTC) if open_now else open_at,
        available=available,
        collective=collective,
        text=q.strip() if q else None,
        away=away,
        outside_departements=outside_departements,
        outside_collectivites=outside_collectivites,
    )
    return search.Query(
        viewer=principal,
        origin=origin,
        bbox=box,
        radius_m=radius_km * 1000,
        include_covering=include_covering,
        filters=filters,
        limit=limit,
        after=page.after,
    )


@router.get(
    "/services/search",
    response_model=ServiceCollection,
    response_class=GeoJSONText,
    responses={**problem_responses(401, 403, 422)},
)
async def search_services(
    request: Request, conn: ReaderDep, query: Annotated[search.Query, Depends(search_query)]
) -> GeoJSONText:
    """Services near a place (lat/lon, commune or postal code) or in a bounding box, for a need.

    Sorted by distance — services located farther whose area covers the place at their real
    distance, flagged `covers` — then fresh before stale. Confidential locations (safe houses) are
    shown at their commune with a front-door contact, and their distance is rounded to the
    kilometre, unless you may see them. An empty page says why in `empty_reason`.
    """
    now = datetime.now(UTC)
    page = await search.search(conn, query, now=now)
    if page.exact_confidential:
        await journal_exact_reads(request, conn, query.viewer, page.exact_confidential)
    if not page.features and query.after is None and query.origin is not None:
        # An unmet need, for the départements' statistics: counted per commune, never the point.
        await stats.record_empty_search(
            conn, lon=query.origin.lon, lat=query.origin.lat, specialisms=query.filters.specialisms, now=now
        )
    # The domain trims the page itself and gives the last key when another page follows.
    pagination = Pagination(
        request, list_scope("services/search", request), 1 if query.bbox else 3, limit=query.limit, cursor=None
    )
    pagination.links_after(page.last_key)
    return feature_collection(page.features, next_url=pagination.next_url, extra={"empty_reason": page.empty_reason})


@router.get(
    "/services/{service_id}",
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={
        **documented(links=service_links("$request.path.service_id")),
        **problem_responses(401, 403, 404, 422),
    },
)
async def get_service(
    request: Request, conn: ReaderDep, principal: AnyRole, service_id: Annotated[uuid.UUID, Path()]
) -> GeoJSONText:
    """One service with its location (subject to confidentiality), areas, hours and capacity. The ETag
    is what a PATCH, PUT or DELETE of the service sends back in If-Match."""
    body, version, exact = await services.get(conn, service_id, viewer=principal, now=datetime.now(UTC))
    if exact is not None:
        await journal_exact_reads(request, conn, principal, [exact])
    return GeoJSONText(body, headers={"ETag": etag(version)})
