"""OGC API – Features (Part 1 Core + GeoJSON, Part 3 queryables as query parameters) under /ogc: the
public directory and the territories as collections a GIS (QGIS, GDAL's OAPIF driver) opens as layers.

Every operation needs a bearer token, as the rest of the API (any role), landing page included. The
services are published as a viewer who may see no safe house sees them, whoever asks (see
directory/collections.py). Query parameters are read here, from the same definitions the document
states: a parameter the operation does not define, one given twice, or a value it cannot use is a 400
problem naming it (OGC's status; api/errors.py) — never its value.
"""

import dataclasses
import json
import math
import re
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, Field, create_model

from directory import collections
from directory.access import Principal
from directory.collections import Collection, Items
from directory.search import BBox

from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import InvalidParameter, problem_responses
from ..links import absolute
from ..pagination import CURSOR_SYNTAX, Pagination, list_scope
from ..params import defined_query_only
from ..responses import GEOJSON, GeoJSONText, JSONText

router = APIRouter(prefix="/ogc", tags=["ogc"])

JSON = "application/json"
SCHEMA_JSON = "application/schema+json"
OPENAPI_JSON = "application/vnd.oai.openapi+json;version=3.1"
QUERYABLES_REL = "http://www.opengis.net/def/rel/ogc/1.0/queryables"
CRS84 = "http://www.opengis.net/def/crs/OGC/1.3/CRS84"
CONFORMANCE = (
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/core",
    "http://www.opengis.net/spec/ogcapi-features-1/1.0/conf/geojson",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables",
    "http://www.opengis.net/spec/ogcapi-features-3/1.0/conf/queryables-query-parameters",
)

# A GIS reads a whole layer page after page: pages larger than the /v1 lists' (a page of 1,000
# communes is ~0.7 MB). Above the maximum is a 400 naming `limit`, never a silent cut.
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class SchemaJSONText(JSONText):
    media_type = SCHEMA_JSON


# --- the documents (for OpenAPI; the bodies are built below or by PostgreSQL) -----------------------


class OgcLink(BaseModel):
    href: str
    rel: str
    type: str
    title: str | None = None


class LandingPage(BaseModel):
    title: str
    description: str
    links: list[OgcLink]


class ConformanceDeclaration(BaseModel):
    conformsTo: list[str]  # noqa: N815 - the standard's member name


class SpatialExtent(BaseModel):
    bbox: list[list[float]] = Field(description="[[minLon, minLat, maxLon, maxLat]]: France, overseas included.")
    crs: Literal["http://www.opengis.net/def/crs/OGC/1.3/CRS84"]


class Extent(BaseModel):
    spatial: SpatialExtent


class CollectionDescription(BaseModel):
    id: str
    title: str
    description: str
    itemType: Literal["feature"]  # noqa: N815
    extent: Extent
    links: list[OgcLink]


class CollectionList(BaseModel):
    links: list[OgcLink]
    collections: list[CollectionDescription]


class QueryableSchema(BaseModel):
    title: str
    description: str
    type: Literal["string"]
    enum: list[str] | None = None
    pattern: str | None = None
    format: str | None = None


class QueryablesDocument(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    schema_: Literal["https://json-schema.org/draft/2020-12/schema"] = Field(alias="$schema")
    id_: str = Field(alias="$id", description="This document's own URL.")
    type: Literal["object"]
    title: str
    properties: dict[str, QueryableSchema]
    additionalProperties: Literal[False]  # noqa: N815


class Point(BaseModel):
    type: Literal["Point"]
    coordinates: list[float] = Field(min_length=2, max_length=2, description="[lon, lat] (CRS84).")


class MultiPolygon(BaseModel):
    type: Literal["MultiPolygon"]
    coordinates: list[Any] = Field(description="Polygons of rings of [lon, lat] positions (CRS84).")


class ServiceProperties(BaseModel):
    name: str
    organisation_id: str
    organisation_name: str
    organisation_kind: str
    specialisms: list[str]
    audiences: list[str]
    age_min: int | None
    age_max: int | None
    genders: list[str]
    languages: list[str]
    channels: list[str]
    location_precision: Literal["exact", "commune"] | None = Field(
        description="`commune` for a confidential location (a safe house, shown at its commune's point) and for "
        "a location known only by its commune; null without a location."
    )
    commune_code: str | None
    commune_name: str | None
    departement_code: str | None
    address: str | None = Field(description="Never a confidential location's.")
    front_door_phone: str | None = Field(description="The contact of a confidential location.")
    front_door_email: str | None = Field(description="The contact of a confidential location.")
    phone: str | None
    email: str | None
    website: str | None
    status: Literal["active", "temporarily_closed"]
    capacity: Literal["available", "limited", "full", "waitlist"] | None
    capacity_places: int | None
    capacity_as_of: str | None
    last_verified_at: str | None
    demo: bool


class RegionProperties(BaseModel):
    code: str
    name: str
    departement_codes: list[str]


class DepartementProperties(BaseModel):
    code: str
    name: str
    region_code: str
    region_name: str
    seat_commune_code: str


class CollectiviteProperties(BaseModel):
    code: str
    name: str
    kind: Literal["departement", "special_status"]
    region_code: str
    region_name: str
    departement_codes: list[str]
    crip_id: str | None
    crip_name: str | None


class CommuneProperties(BaseModel):
    code: str
    name: str
    departement_code: str
    collectivite_code: str
    region_code: str
    population: int | None
    postal_codes: list[str]


def _feature_models(
    collection: Collection, properties: type[BaseModel], geometry: type[BaseModel]
) -> tuple[type[BaseModel], type[BaseModel]]:
    """(one feature with its links, a page of features) of a collection, for the document."""
    name = collection.id.capitalize()
    feature_fields: dict[str, Any] = {
        "type": (Literal["Feature"], ...),
        "id": (str, Field(pattern=collection.id_pattern)),
        "geometry": (geometry | None, ...),
        "properties": (properties, ...),
    }
    feature = create_model(f"Ogc{name}Feature", **feature_fields)
    item = create_model(f"Ogc{name}Item", __base__=feature, links=(list[OgcLink], ...))
    page_fields: dict[str, Any] = {
        "type": (Literal["FeatureCollection"], ...),
        "timeStamp": (str, Field(description="When the page was made (RFC 3339).")),
        "numberMatched": (
            int,
            Field(
                default=None,
                ge=0,
                description="Features matching the query, over every page; left out when more than "
                f"{collections.MAX_COUNTED:,} match (counting a whole layer would cost more than the page).",
            ),
        ),
        "numberReturned": (int, Field(ge=0)),
        "features": (list[feature], ...),
        "links": (list[OgcLink], ...),
    }
    return item, create_model(f"Ogc{name}Page", **page_fields)


_MODELS: dict[str, tuple[type[BaseModel], type[BaseModel]]] = {
    "services": _feature_models(collections.SERVICES, ServiceProperties, Point),
    "regions": _feature_models(collections.REGIONS, RegionProperties, MultiPolygon),
    "departements": _feature_models(collections.DEPARTEMENTS, DepartementProperties, MultiPolygon),
    "collectivites": _feature_models(collections.COLLECTIVITES, CollectiviteProperties, MultiPolygon),
    "communes": _feature_models(collections.COMMUNES, CommuneProperties, MultiPolygon),
}


# --- query parameters: stated once, read and documented from the same definitions -------------------


def _parameter(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema,
        "style": "form",
        "explode": False,
    }


_NUMBER = r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
# RFC 3339 date-time: a date, T, a time with seconds, an offset (Z or ±hh:mm).
_DATE_TIME = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(?:\.[0-9]{1,6})?(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])"
)
DATETIME = rf"^(?:{_DATE_TIME}|(?:{_DATE_TIME}|\.\.)?/(?:{_DATE_TIME}|\.\.)?)$"

BBOX_PARAMETER = _parameter(
    "bbox",
    "Only features whose geometry intersects this box: minLon,minLat,maxLon,maxLat in WGS 84 (CRS84), or "
    "six numbers with heights (minLon,minLat,minHeight,maxLon,maxLat,maxHeight; the heights are ignored). "
    "Longitudes within ±180, latitudes within ±90, each minimum at most its maximum (no box across the "
    "antimeridian). Features without a geometry never match. No limit on the box's size: the page is.",
    {
        "type": "array",
        "oneOf": [{"minItems": 4, "maxItems": 4}, {"minItems": 6, "maxItems": 6}],
        "items": {"type": "number"},
    },
)
LIMIT_PARAMETER = _parameter(
    "limit",
    f"Features per page: 1 to {MAX_LIMIT} ({DEFAULT_LIMIT} by default). Follow the `next` link for the rest.",
    {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT, "default": DEFAULT_LIMIT},
)
CURSOR_PARAMETER = _parameter(
    "cursor",
    "Where a page starts: set by the server in the `next` link of the previous page (signed).",
    {"type": "string", "maxLength": 512, "pattern": CURSOR_SYNTAX},
)


def _datetime_parameter(collection: Collection) -> dict[str, Any]:
    if collection.temporal is not None:
        meaning = (
            "Services last verified (`last_verified_at`) at this instant or within this interval; a "
            "service never verified has no time and matches any value (OGC API – Features Part 1)."
        )
    else:
        meaning = "Territories have no temporal geometry: the value is checked, and every feature matches."
    return _parameter(
        "datetime",
        f"An RFC 3339 date-time (with its offset), or an interval `start/end` whose open end is `..` or "
        f"empty, start at most end. {meaning}",
        {"type": "string", "maxLength": 100, "pattern": DATETIME},
    )


def _queryable_parameter(queryable: collections.Queryable) -> dict[str, Any]:
    return _parameter(queryable.name, queryable.description, queryable.schema)


def items_parameters(collection: Collection) -> list[dict[str, Any]]:
    return [
        BBOX_PARAMETER,
        _datetime_parameter(collection),
        LIMIT_PARAMETER,
        CURSOR_PARAMETER,
        *(_queryable_parameter(queryable) for queryable in collection.queryables),
    ]


async def ogc_caller(request: Request, principal: AnyRole) -> Principal:
    """The policy of every /ogc operation (any role), then its query string: only the parameters the
    operation defines, each at most once (OGC: 400 for an unknown parameter, see api/errors.py)."""
    defined_query_only(request)
    return principal


OgcCaller = Annotated[Principal, Depends(ogc_caller)]


def _limit(value: str | None) -> int:
    if value is None:
        return DEFAULT_LIMIT
    if not re.fullmatch(r"[0-9]{1,9}", value) or not 1 <= int(value) <= MAX_LIMIT:
        raise InvalidParameter("limit", f"expected a whole number from 1 to {MAX_LIMIT}")
    return int(value)


def _bbox(value: str | None) -> BBox | None:
    if value is None:
        return None
    parts = value.split(",")
    if len(parts) not in (4, 6) or not all(re.fullmatch(_NUMBER, part) for part in parts):
        raise InvalidParameter("bbox", "expected 4 (or 6, with heights) comma-separated numbers")
    numbers = [float(part) for part in parts]
    if not all(math.isfinite(number) for number in numbers):
        raise InvalidParameter("bbox", "the numbers must be finite")
    if len(numbers) == 6:
        min_lon, min_lat, min_height, max_lon, max_lat, max_height = numbers
        if min_height > max_height:
            raise InvalidParameter("bbox", "the minimum height exceeds the maximum")
    else:
        min_lon, min_lat, max_lon, max_lat = numbers
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        raise InvalidParameter("bbox", "longitudes must lie within ±180 and latitudes within ±90 (CRS84)")
    if min_lat > max_lat:
        raise InvalidParameter("bbox", "the box is inverted: minLat must not exceed maxLat")
    if min_lon > max_lon:
        raise InvalidParameter("bbox", "minLon exceeds maxLon: boxes across the antimeridian are not supported")
    return BBox(min_lon, min_lat, max_lon, max_lat)


def _instant(value: str) -> datetime:
    try:
        return datetime.fromisoformat(value)
    except ValueError:
        raise InvalidParameter("datetime", "not a date-time that exists (RFC 3339)") from None


def _interval(value: str | None) -> tuple[datetime | None, datetime | None] | None:
    if value is None:
        return None
    if not re.fullmatch(DATETIME, value):
        raise InvalidParameter(
            "datetime", "expected an RFC 3339 date-time with its offset, or start/end with `..` for an open end"
        )
    if "/" not in value:
        instant = _instant(value)
        return instant, instant
    start_text, end_text = value.split("/")
    start = _instant(start_text) if start_text not in ("", "..") else None
    end = _instant(end_text) if end_text not in ("", "..") else None
    if start is not None and end is not None and start > end:
        raise InvalidParameter("datetime", "the interval ends before it starts")
    return start, end


def _filters(collection: Collection, request: Request) -> tuple[tuple[collections.Queryable, str], ...]:
    found = []
    for queryable in collection.queryables:
        value = request.query_params.get(queryable.name)
        if value is None:
            continue
        schema = queryable.schema
        if "enum" in schema and value not in schema["enum"]:
            raise InvalidParameter(queryable.name, "not one of the values the queryables document lists")
        if "pattern" in schema and not re.fullmatch(schema["pattern"], value):
            raise InvalidParameter(queryable.name, "does not have the syntax the queryables document states")
        found.append((queryable, value))
    return tuple(found)


def _self(request: Request) -> str:
    query = request.url.query
    return absolute(request.url.path) + (f"?{query}" if query else "")


def _link(rel: str, path: str, media_type: str, title: str | None = None) -> dict[str, str]:
    link = {"rel": rel, "type": media_type, "href": absolute(path)}
    if title:
        link["title"] = title
    return link


def _link_header(links: list[dict[str, str]]) -> str:
    """The links as an RFC 8288 `Link` header (OGC API Features /rec/core/link-header)."""
    return ", ".join(f'<{link["href"]}>; rel="{link["rel"]}"; type="{link["type"]}"' for link in links)


LINK_HEADER = {
    "Link": {
        "description": "The body's links as RFC 8288 links (OGC API Features, /rec/core/link-header).",
        "schema": {"type": "string"},
    }
}


def _json(document: object) -> str:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":"))


_ERRORS = problem_responses(400, 401, 403)


# --- the routes -------------------------------------------------------------------------------------


async def landing_page(_: OgcCaller) -> JSONText:
    """The OGC API – Features landing page: links to the API definition, the conformance declaration
    and the collections."""
    links = [
        _link("self", "/ogc/", JSON, "This document"),
        _link("service-desc", "/openapi.json", OPENAPI_JSON, "The API definition (OpenAPI 3.1)"),
        _link("service-doc", "/docs", "text/html", "The API documentation"),
        _link("conformance", "/ogc/conformance", JSON, "The conformance classes implemented"),
        _link("data", "/ogc/collections", JSON, "The collections"),
    ]
    return JSONText(
        _json(
            {
                "title": "Maillage",
                "description": "The directory of services for minors who are victims of sexual exploitation, and "
                "the French territories, as OGC API – Features collections.",
                "links": links,
            }
        )
    )


for _path in ("/", ""):
    # `/ogc/` is the landing page; `/ogc` too, for clients given the URL without its slash.
    router.add_api_route(
        _path,
        landing_page,
        methods=["GET"],
        name="ogc_landing_page" if _path else "ogc_landing_page_without_slash",
        summary="Landing page",
        response_model=LandingPage,
        response_class=JSONText,
        responses=_ERRORS,
        openapi_extra={"parameters": []},
        include_in_schema=bool(_path),
    )


@router.get(
    "/conformance",
    name="ogc_conformance",
    summary="Conformance declaration",
    response_model=ConformanceDeclaration,
    response_class=JSONText,
    responses=_ERRORS,
    openapi_extra={"parameters": []},
)
async def conformance(_: OgcCaller) -> JSONText:
    """The conformance classes implemented: OGC API – Features Part 1 Core and GeoJSON, Part 3 queryables
    and queryables as query parameters."""
    return JSONText(_json({"conformsTo": list(CONFORMANCE)}))


def _collection_document(collection: Collection, extent: list[float]) -> dict[str, Any]:
    base = f"/ogc/collections/{collection.id}"
    return {
        "id": collection.id,
        "title": collection.title,
        "description": collection.description,
        "itemType": "feature",
        "extent": {"spatial": {"bbox": [extent], "crs": CRS84}},
        "links": [
            _link("self", base, JSON, collection.title),
            _link("items", f"{base}/items", GEOJSON, f"{collection.title} (GeoJSON)"),
            _link(QUERYABLES_REL, f"{base}/queryables", SCHEMA_JSON, "Queryables"),
        ],
    }


@router.get(
    "/collections",
    name="ogc_collections",
    summary="The collections",
    response_model=CollectionList,
    response_class=JSONText,
    responses=_ERRORS,
    openapi_extra={"parameters": []},
)
async def list_collections(_: OgcCaller, conn: ReaderDep) -> JSONText:
    """The collections: `services` (the public directory), `regions`, `departements`, `collectivites` and
    `communes`."""
    extent = await collections.extent(conn)
    return JSONText(
        _json(
            {
                "links": [_link("self", "/ogc/collections", JSON, "The collections")],
                "collections": [_collection_document(c, extent) for c in collections.COLLECTIONS.values()],
            }
        )
    )


_SUMMARIES = {"collection": "the collection", "items": "features", "item": "one feature", "queryables": "queryables"}


def _routes_of(collection: Collection) -> None:
    """The four operations of one collection: its description, its items, one item, its queryables."""
    base = f"/collections/{collection.id}"
    item_model, page_model = _MODELS[collection.id]
    collection_parameters = items_parameters(collection)

    async def describe(_: OgcCaller, conn: ReaderDep) -> JSONText:
        return JSONText(_json(_collection_document(collection, await collections.extent(conn))))

    async def items(request: Request, _: OgcCaller, conn: ReaderDep) -> GeoJSONText:
        params = request.query_params
        limit = _limit(params.get("limit"))
        query = Items(
            bbox=_bbox(params.get("bbox")),
            interval=_interval(params.get("datetime")),
            filters=_filters(collection, request),
            limit=limit,
        )
        cursor = params.get("cursor")
        if cursor is not None and (len(cursor) > 512 or not re.fullmatch(CURSOR_SYNTAX, cursor)):
            raise InvalidParameter("cursor", "malformed cursor")
        pagination = Pagination(request, list_scope(f"ogc/{collection.id}", request), 2, limit=limit, cursor=cursor)
        if pagination.after is not None:
            after, matched = pagination.after
            if not isinstance(after, str) or not (matched is None or isinstance(matched, int)):
                raise InvalidParameter("cursor", "malformed cursor")
            query = dataclasses.replace(query, after=after, matched=matched)
        page = await collections.items(conn, collection, query)
        pagination.links_after((page.last_id, page.number_matched) if page.last_id is not None else None)
        links = [
            {"rel": "self", "type": GEOJSON, "href": _self(request), "title": "This page"},
            _link("collection", f"/ogc{base}", JSON, collection.title),
            _link(QUERYABLES_REL, f"/ogc{base}/queryables", SCHEMA_JSON, "Queryables"),
        ]
        if pagination.next_url:
            links.append({"rel": "next", "type": GEOJSON, "href": pagination.next_url, "title": "Next page"})
        head = {
            "type": "FeatureCollection",
            "timeStamp": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "numberReturned": len(page.features),
        }
        if page.number_matched is not None:
            head["numberMatched"] = page.number_matched
        return GeoJSONText(
            _json(head)[:-1] + ',"features":[' + ",".join(page.features) + '],"links":' + _json(links) + "}",
            headers={"Link": _link_header(links)},
        )

    async def item(request: Request, _: OgcCaller, conn: ReaderDep) -> GeoJSONText:
        # Read here, not by FastAPI: an id of another syntax is a 404 like an unknown one.
        feature_id = str(request.path_params["feature_id"])
        feature = await collections.item(conn, collection, feature_id)
        links = [
            {"rel": "self", "type": GEOJSON, "href": _self(request), "title": "This feature"},
            _link("collection", f"/ogc{base}", JSON, collection.title),
        ]
        return GeoJSONText(feature[:-1] + ',"links":' + _json(links) + "}", headers={"Link": _link_header(links)})

    async def queryables(request: Request, _: OgcCaller) -> SchemaJSONText:
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": absolute(request.url.path),
            "type": "object",
            "title": collection.title,
            "properties": {
                q.name: {"title": q.title, "description": q.description, **q.schema} for q in collection.queryables
            },
            "additionalProperties": False,
        }
        return SchemaJSONText(_json(document))

    operations: Sequence[tuple[str, str, Callable[..., Any], type[BaseModel], type[JSONText], list[Any], str]] = (
        (
            base,
            "collection",
            describe,
            CollectionDescription,
            JSONText,
            [],
            f"The `{collection.id}` collection: what it holds, its extent and links.",
        ),
        (
            f"{base}/items",
            "items",
            items,
            page_model,
            GeoJSONText,
            collection_parameters,
            f"A page of the `{collection.id}` collection's features, in the order of their ids. "
            + collection.description,
        ),
        (
            f"{base}/items/{{feature_id}}",
            "item",
            item,
            item_model,
            GeoJSONText,
            [
                {
                    "name": "feature_id",
                    "in": "path",
                    "required": True,
                    "description": "The feature's id (an id of another syntax names no feature: 404).",
                    "schema": {"type": "string", "pattern": collection.id_pattern},
                }
            ],
            f"One feature of the `{collection.id}` collection; 404 when no feature has this id.",
        ),
        (
            f"{base}/queryables",
            "queryables",
            queryables,
            QueryablesDocument,
            SchemaJSONText,
            [],
            f"The properties the `{collection.id}` collection's items can be filtered on, as query parameters "
            "(a JSON Schema).",
        ),
    )
    for path, kind, endpoint, model, response_class, parameters, description in operations:
        statuses = (400, 401, 403, 404) if kind == "item" else (400, 401, 403)
        linked: dict[int | str, dict[str, Any]] = {200: {"headers": LINK_HEADER}} if kind in ("items", "item") else {}
        router.add_api_route(
            path,
            endpoint,
            methods=["GET"],
            name=f"ogc_{collection.id}_{kind}",
            summary=f"{collection.title}: {_SUMMARIES[kind]}",
            description=description,
            response_model=model,
            response_class=response_class,
            responses={**linked, **problem_responses(*statuses)},
            openapi_extra={"parameters": parameters},
        )


for _collection in collections.COLLECTIONS.values():
    _routes_of(_collection)
