"""Territories: which commune, département, collectivité and CRIP answer for a place."""

import re
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from directory import organisations
from directory.errors import NotFound
from geo import territories
from geo.territories import GeometryDetail

from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import InvalidParameter, problem_responses
from ..links import absolute
from ..pagination import Pagination
from ..params import DEPARTEMENT_CODE, Cursor, Latitude, Limit, Longitude
from ..responses import GeoJSONText, JSONText, feature_collection
from ..schemas import (
    CommuneOut,
    OrganisationDetail,
    Resolution,
    ResolveBatchIn,
    ResolveBatchOut,
    TerritoriesIndex,
    TerritoryCollection,
    TerritoryFeature,
)

router = APIRouter(prefix="/v1", tags=["territories"])

GeometryParam = Annotated[
    GeometryDetail,
    Query(description="`none`, `simplified` (≈100 m, for maps) or `full` (the resolution geometry)."),
]
DepartementCode = Annotated[str, Path(pattern=DEPARTEMENT_CODE, description="INSEE code: 01…95, 2A, 2B, 971…976.")]
CollectiviteCode = Annotated[
    str, Path(pattern=r"^[0-9]{1,3}[A-Z]{1,2}$", description="COG code: 93D, 69M, 20R, 6AE, 75C, 972R…")
]


@router.get("/territories", response_model=TerritoriesIndex, responses=problem_responses(401, 403, 404))
async def territories_index(_: AnyRole, conn: ReaderDep) -> TerritoriesIndex:
    """Which official release the territories come from (its COG year: commune codes are those of
    1 January of that year), and where to read them."""
    reference = await territories.reference(conn)
    if reference is None:
        raise NotFound("the territories are not loaded: run `maillage seed`")
    links = [
        ("departements", "/v1/departements", "application/geo+json"),
        ("collectivites", "/v1/collectivites", "application/geo+json"),
        ("communes", "/v1/communes", "application/json"),
        ("resolve", "/v1/territories/resolve", "application/json"),
    ]
    return TerritoriesIndex.model_validate(
        {"reference": reference, "links": [{"rel": r, "href": absolute(h), "type": t} for r, h, t in links]}
    )


@router.get("/territories/resolve", response_model=Resolution, responses=problem_responses(401, 403, 404, 422))
async def resolve_point(_: AnyRole, conn: ReaderDep, lat: Latitude, lon: Longitude) -> JSONText:
    """The commune, département, région and collectivité of a point, and the CRIP to alert.

    A point in a gap between commune boundaries (coastline) resolves to the nearest commune within
    2 km; a point at sea or abroad is a 404 problem. The point is never logged or stored.
    """
    return JSONText(await territories.resolve(conn, lon=lon, lat=lat))


@router.post("/territories/resolve", response_model=ResolveBatchOut, responses=problem_responses(401, 403, 413, 422))
async def resolve_points(_: AnyRole, conn: ReaderDep, body: ResolveBatchIn) -> JSONText:
    """Resolve up to 1,000 points at once; results come back in order, null where outside France."""
    points = [(point.lon, point.lat) for point in body.points]
    return JSONText('{"results":' + await territories.resolve_many(conn, points) + "}")


def _collection(page: Pagination, rows: list[tuple[str, str]]) -> GeoJSONText:
    """Rows are (code, feature): the code is the key."""
    rows, _ = page.finish(rows, key=lambda row: row[0])
    return feature_collection([feature for _, feature in rows], next_url=page.next_url)


@router.get(
    "/departements",
    response_model=TerritoryCollection,
    response_class=GeoJSONText,
    responses={**problem_responses(401, 403, 422)},
)
async def list_departements(
    _: AnyRole,
    conn: ReaderDep,
    request: Request,
    geometry: GeometryParam = GeometryDetail.none,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> GeoJSONText:
    """The 101 départements as GeoJSON features, by INSEE code, with their collectivité(s)."""
    page = Pagination(request, "departements", str, limit=limit, cursor=cursor)
    rows = await territories.list_departements(conn, after=page.after, limit=page.fetch, detail=geometry)
    return _collection(page, rows)


@router.get(
    "/departements/{code}",
    response_model=TerritoryFeature,
    response_class=GeoJSONText,
    responses={**problem_responses(401, 403, 404, 422)},
)
async def get_departement(
    _: AnyRole,
    conn: ReaderDep,
    code: DepartementCode,
    geometry: GeometryParam = GeometryDetail.none,
) -> GeoJSONText:
    """One département as a GeoJSON feature."""
    return GeoJSONText(await territories.get_departement(conn, code, detail=geometry))


@router.get(
    "/collectivites",
    response_model=TerritoryCollection,
    response_class=GeoJSONText,
    responses={**problem_responses(401, 403, 422)},
)
async def list_collectivites(
    _: AnyRole,
    conn: ReaderDep,
    request: Request,
    geometry: GeometryParam = GeometryDetail.none,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> GeoJSONText:
    """The 100 collectivités that run child protection, each with its départements and CRIP."""
    page = Pagination(request, "collectivites", str, limit=limit, cursor=cursor)
    rows = await territories.list_collectivites(conn, after=page.after, limit=page.fetch, detail=geometry)
    return _collection(page, rows)


@router.get(
    "/collectivites/{code}",
    response_model=TerritoryFeature,
    response_class=GeoJSONText,
    responses={**problem_responses(401, 403, 404, 422)},
)
async def get_collectivite(
    _: AnyRole,
    conn: ReaderDep,
    code: CollectiviteCode,
    geometry: GeometryParam = GeometryDetail.none,
) -> GeoJSONText:
    """One collectivité as a GeoJSON feature, with its départements and CRIP."""
    return GeoJSONText(await territories.get_collectivite(conn, code, detail=geometry))


@router.get(
    "/collectivites/{code}/crip", response_model=OrganisationDetail, responses=problem_responses(401, 403, 404, 422)
)
async def get_crip(_: AnyRole, conn: ReaderDep, code: CollectiviteCode) -> JSONText:
    """The CRIP to alert for this collectivité, with the state of its contact details."""
    return JSONText(await organisations.crip_of(conn, code))


# A name (it has a letter) or a postal code (five digits), on one line: the rule, as the document
# states it. Checked here rather than by `Query(pattern=)` so that the refusal reads as a sentence.
_LETTER = "A-Za-zÀ-ÖØ-öø-ÿŒœ"
_VISIBLE = r"[^\x00-\x1f\x7f-\x9f]"
COMMUNE_QUERY = rf"^ *(?:[0-9]{{5}}|{_VISIBLE}*[{_LETTER}]{_VISIBLE}*) *$"


@router.get("/communes", response_model=list[CommuneOut], responses=problem_responses(401, 403, 422))
async def search_communes(
    _: AnyRole,
    conn: ReaderDep,
    q: Annotated[
        str,
        Query(
            min_length=2,
            max_length=100,
            description="Name (accents and case ignored, 'st' for 'saint') or a 5-digit postal code.",
            json_schema_extra={"pattern": COMMUNE_QUERY},
        ),
    ],
    departement: Annotated[
        str | None, Query(pattern=DEPARTEMENT_CODE, description="Restrict to one département.")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=50)] = 10,
) -> JSONText:
    """Commune autocomplete by name or postal code, best match first, then by population."""
    if not re.fullmatch(COMMUNE_QUERY, q):
        raise InvalidParameter("q", "a commune name (with letters) or a postal code of 5 digits, on one line")
    query = q.strip()
    return JSONText(await territories.search_communes(conn, query=query, departement=departement, limit=limit))
