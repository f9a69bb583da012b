"""Listing writes: partners keep their own services, locations and areas true (admins any).

Every PATCH, PUT and DELETE needs `If-Match` with the ETag of the listing as last read (428 without,
412 when it changed meanwhile). A service's closures, reopening and verification (POST) take it too,
but optionally: the clients written before they read it send none, and are still served. PATCH
bodies are JSON Merge Patches (RFC 7396). Fields a partner may not set (organisation, verification,
status, demo flag, ids, timestamps) are refused with a 422.
"""

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from directory import areas, history, locations, services
from directory.access import Principal, Role, Scoped
from directory.models import Visibility
from directory.revisions import Expected
from directory.schemas import (
    AreaCreate,
    AreaPatch,
    CapacityUpdate,
    ClosureCreate,
    LocationCreate,
    LocationPatch,
    ServiceCreate,
    ServicePatch,
)
from sync.geocoding import Geocoder, GeocodingUnavailable

from ..audit import Entry
from ..auth import Allow, AllowWrites
from ..db import ReaderDep, SessionDep
from ..errors import problem_responses
from ..etags import documented, etag, if_match, optional_if_match
from ..links import ETAG, ID, absolute, follow
from ..pagination import Pagination
from ..params import Cursor, Limit, merge_patch
from ..responses import GeoJSONText, JSONText, items_page
from ..schemas import AreaOut, HistoryPage, LocationOut, ServiceDetail
from ..scoping import InScope

router = APIRouter(prefix="/v1", tags=["listings"])

Writer = Annotated[Principal, Depends(AllowWrites(Role.partner, Role.admin))]
Manager = Annotated[Principal, Depends(Allow(Role.partner, Role.admin))]
ServiceId = Annotated[uuid.UUID, Path()]
Versions = Annotated[Expected, Depends(if_match)]
# Closures, reopening and verification: If-Match optional, for the clients written before it was read.
OptionalVersions = Annotated[Expected | None, Depends(optional_if_match)]
# Scope before the body (api/scoping.py): declared after the policy, before the body is looked at.
ServiceInScope = Annotated[None, Depends(InScope(Scoped.service, "service_id"))]
LocationInScope = Annotated[None, Depends(InScope(Scoped.location, "location_id"))]
AreaInScope = Annotated[None, Depends(InScope(Scoped.service_area, "area_id"))]
_WRITE = problem_responses(401, 403, 404, 413, 422, 429)
_CONDITIONAL = problem_responses(401, 403, 404, 412, 413, 422, 428, 429)


def service_links(service_id: str) -> dict[str, Any]:
    """What a partner does with its service: keep it true (at the version read), open and close it."""
    return {
        "GetService": follow("get_service", "Read the service again.", service_id=service_id),
        "UpdateService": follow("update_service", "Change it.", service_id=service_id, if_match=ETAG),
        "SetCapacity": follow("set_capacity", "Say how many places are free.", service_id=service_id, if_match=ETAG),
        "Close": follow("close_service", "Close it for a while.", service_id=service_id, if_match=ETAG),
        "Reopen": follow("reopen_service", "End a closure.", service_id=service_id, if_match=ETAG),
        "Verify": follow("verify_service", "Confirm it is still true.", service_id=service_id, if_match=ETAG),
        "History": follow("service_history", "Its history.", service_id=service_id),
        "AddArea": follow("create_area", "Say where it takes people from.", body={"service_id": service_id}),
        "Archive": follow("archive_service", "Archive it.", service_id=service_id, if_match=ETAG),
    }


def location_links(location_id: str) -> dict[str, Any]:
    return {
        "GetLocation": follow("get_location", "Read the location again.", location_id=location_id),
        "UpdateLocation": follow("update_location", "Change it.", location_id=location_id, if_match=ETAG),
        "History": follow("location_history", "Its history.", location_id=location_id),
        "AddService": follow("create_service", "Offer a service there.", body={"location_id": location_id}),
        "Archive": follow("archive_location", "Archive it.", location_id=location_id, if_match=ETAG),
    }


def area_links(area_id: str) -> dict[str, Any]:
    return {
        "GetArea": follow("get_area", "Read the area again.", area_id=area_id),
        "UpdateArea": follow("update_area", "Change it.", area_id=area_id, if_match=ETAG),
        "Remove": follow("archive_area", "Remove it.", area_id=area_id, if_match=ETAG),
    }


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


async def _service(
    conn: ReaderDep, service_id: uuid.UUID, principal: Principal, *, status: int = 200, location: bool = False
) -> GeoJSONText:
    body, version, _ = await services.get(conn, service_id, viewer=principal, now=datetime.now(UTC))
    headers = {"ETag": etag(version)}
    if location:
        headers["Location"] = absolute(f"/v1/services/{service_id}")
    return GeoJSONText(body, status_code=status, headers=headers)


# --- services ----------------------------------------------------------------------------------


@router.post(
    "/services",
    status_code=201,
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={**documented(201, links=service_links(ID)), **_WRITE},
)
async def create_service(
    request: Request, session: SessionDep, conn: ReaderDep, principal: Writer, body: ServiceCreate
) -> GeoJSONText:
    """Create a service of your organisation (admins: of the organisation given)."""
    service = await services.create(session, body, actor=principal, request_id=_request_id(request))
    await session.commit()
    return await _service(conn, service.id, principal, status=201, location=True)


@router.patch(
    "/services/{service_id}",
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={**documented(), **_CONDITIONAL},
    openapi_extra=merge_patch(ServicePatch),
)
async def update_service(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    service_id: ServiceId,
    in_scope: ServiceInScope,
    versions: Versions,
    body: ServicePatch,
) -> GeoJSONText:
    """Change some fields of a service (JSON Merge Patch). Needs If-Match."""
    await services.update(
        session, service_id, body, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _service(conn, service_id, principal)


@router.delete("/services/{service_id}", status_code=204, responses=_CONDITIONAL)
async def archive_service(
    request: Request, session: SessionDep, principal: Writer, service_id: ServiceId, versions: Versions
) -> Response:
    """Archive a service: it leaves search, and stays in its history. Needs If-Match."""
    await services.archive(
        session, service_id, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return Response(status_code=204)


@router.put(
    "/services/{service_id}/capacity",
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={**documented(), **_CONDITIONAL},
)
async def set_capacity(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    service_id: ServiceId,
    in_scope: ServiceInScope,
    versions: Versions,
    body: CapacityUpdate,
) -> GeoJSONText:
    """Say how many places are free now: available, limited, full or waitlist. Needs If-Match."""
    await services.set_capacity(
        session, service_id, body, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _service(conn, service_id, principal)


@router.post(
    "/services/{service_id}/closures",
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={**documented(), **problem_responses(401, 403, 404, 409, 412, 413, 422, 429)},  # 409: suspended
)
async def close_service(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    service_id: ServiceId,
    in_scope: ServiceInScope,
    versions: OptionalVersions,
    body: ClosureCreate,
) -> GeoJSONText:
    """Close a service temporarily, from now or a given time, until a date or until reopened. It
    replaces a closure under way. A suspended service stays suspended (409).

    If-Match is optional here, and only here and on reopen and verify: clients written before these
    operations read it send none, and are still served (no 428). Send it with the ETag you read: when
    the service changed meanwhile (a colleague closed or reopened it) the closure is refused with a 412
    and nothing changes."""
    await services.close_temporarily(
        session, service_id, body, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _service(conn, service_id, principal)


@router.post(
    "/services/{service_id}/reopen",
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={**documented(), **problem_responses(401, 403, 404, 409, 412, 413, 422, 429)},  # 409: suspended
)
async def reopen_service(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    service_id: ServiceId,
    versions: OptionalVersions,
) -> GeoJSONText:
    """End a temporary closure now. A suspended service stays suspended (409): only Maillage lifts it.

    If-Match is optional here (backwards-compatible: without it the service is reopened as it is now,
    no 428). Send it with the ETag you read: when the service changed meanwhile (a colleague's newer
    closure) the reopening is refused with a 412 and nothing changes."""
    await services.reopen(
        session, service_id, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _service(conn, service_id, principal)


@router.post(
    "/services/{service_id}/verify",
    response_model=ServiceDetail,
    response_class=GeoJSONText,
    responses={**documented(), **problem_responses(401, 403, 404, 412, 413, 422, 429)},
)
async def verify_service(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    service_id: ServiceId,
    versions: OptionalVersions,
) -> GeoJSONText:
    """Confirm the listing is still true: it stays fresh for 180 more days.

    If-Match is optional here (backwards-compatible: without it the listing is confirmed as it is now,
    no 428). Send it with the ETag of what you checked: when the service changed meanwhile, you have
    not confirmed what it now says, and the verification is refused with a 412."""
    await services.verify(
        session, service_id, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _service(conn, service_id, principal)


@router.get(
    "/services/{service_id}/history", response_model=HistoryPage, responses=problem_responses(401, 403, 404, 422)
)
async def service_history(
    request: Request,
    conn: ReaderDep,
    principal: Manager,
    service_id: ServiceId,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """Every change to a service and its areas, oldest first: who, when, which fields, before and after."""
    page = Pagination(request, f"history:{service_id}", int, limit=limit, cursor=cursor)
    # The domain fetches one row more itself and says whether there was one.
    rows, more = await history.service_history(conn, service_id, viewer=principal, after=page.after, limit=limit)
    links = page.links_after(rows[-1][0] if more else None)
    return items_page((row[1] for row in rows), links)


# --- locations ---------------------------------------------------------------------------------


async def _location(
    conn: ReaderDep,
    location_id: uuid.UUID,
    principal: Principal,
    *,
    status: int = 200,
    placement: dict[str, str] | None = None,
) -> JSONText:
    body, version = await locations.get(conn, location_id, viewer=principal)
    if placement is not None:  # only on the answer to a creation without a point
        body = json.dumps({**json.loads(body), "placement": placement}, ensure_ascii=False)
    headers = {"ETag": etag(version)}
    if status == 201:
        headers["Location"] = absolute(f"/v1/locations/{location_id}")
    return JSONText(body, status_code=status, headers=headers)


@router.get(
    "/locations/{location_id}",
    response_model=LocationOut,
    responses={
        **documented(links=location_links("$request.path.location_id")),
        **problem_responses(401, 403, 404, 422),
    },
)
async def get_location(conn: ReaderDep, principal: Manager, location_id: Annotated[uuid.UUID, Path()]) -> JSONText:
    """A location of your organisation, with its ETag. Admins see a confidential one at its commune,
    without its address, like everyone but its organisation."""
    return await _location(conn, location_id, principal)


@router.get(
    "/locations/{location_id}/history", response_model=HistoryPage, responses=problem_responses(401, 403, 404, 422)
)
async def location_history(
    request: Request,
    conn: ReaderDep,
    principal: Manager,
    location_id: Annotated[uuid.UUID, Path()],
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """Every change to a location, oldest first: who, when, which fields, before and after. Former
    points and addresses of a location that is or was confidential are shown to its organisation only;
    others read `{"redacted": true}` for them."""
    page = Pagination(request, f"location-history:{location_id}", int, limit=limit, cursor=cursor)
    rows, more = await locations.history(conn, location_id, viewer=principal, after=page.after, limit=limit)
    links = page.links_after(rows[-1][0] if more else None)
    return items_page((row[1] for row in rows), links)


@router.post(
    "/locations",
    status_code=201,
    response_model=LocationOut,
    responses={**documented(201, links=location_links(ID)), **_WRITE},
)
async def create_location(
    request: Request, session: SessionDep, conn: ReaderDep, principal: Writer, body: LocationCreate
) -> JSONText:
    """Create a location: a GeoJSON point inside France, in (or within 2 km of) the commune given.
    A confidential location (safe house) needs a front-door phone or e-mail, and only its own
    organisation creates one: admins create public locations (`visibility: confidential` from an admin
    is a 422 naming the field).

    Without a point, a public location's address is placed by the IGN Géoplateforme geocoder (a
    precise result inside the commune only), and otherwise the location stands at its commune's point
    with `location_precision: commune`; `placement` in the answer says which and why. A confidential
    location's address never leaves Maillage: give its point, or it stands at its commune's point."""
    await locations.check_new(session, body, actor=principal)  # refused requests send nothing out
    geocoded, placement = await _place(request, body)
    location = await locations.create(
        session, body, actor=principal, request_id=_request_id(request), geocoded=geocoded
    )
    await session.commit()
    return await _location(conn, location.id, principal, status=201, placement=placement)


_GIVE_THE_POINT = "give its point to place it exactly"


async def _place(request: Request, body: LocationCreate) -> tuple[locations.Geocoded | None, dict[str, str] | None]:
    """The geocoder's point for a public location given without one, and what the answer says about
    how it was placed. Runs before any transaction opens: the outside call holds no database lock."""
    if body.point is not None or not body.address:
        return None, None  # placed by its point, or refused for want of either (directory/locations.py)
    fallback = "the location stands at its commune's point"
    if body.visibility == Visibility.confidential:
        detail = f"a confidential location's address is never sent to an outside service: {fallback}"
        return None, {"method": "commune", "detail": f"{detail}; {_GIVE_THE_POINT}"}
    geocoder: Geocoder | None = request.app.state.geocoder
    if geocoder is None:
        return None, {"method": "commune", "detail": f"geocoding is turned off here: {fallback}; {_GIVE_THE_POINT}"}
    slots: asyncio.Semaphore = request.app.state.geocoding_slots
    if slots.locked():  # a slow geocoder must not hold every request's database connection
        return None, {"method": "commune", "detail": f"the geocoder is busy: {fallback}; {_GIVE_THE_POINT}"}
    try:
        async with slots:
            found = await geocoder.locate(body.address or "", body.commune_code)
    except GeocodingUnavailable as exc:
        detail = f"the geocoder could not answer ({exc.reason}): {fallback}; {_GIVE_THE_POINT}"
        return None, {"method": "commune", "detail": detail}
    if found is None:
        detail = f"the geocoder found no precise match for this address in the commune: {fallback}"
        return None, {"method": "commune", "detail": f"{detail}; {_GIVE_THE_POINT}"}
    detail = f"placed by the IGN Géoplateforme geocoder: {found.label} ({found.type}, score {found.score:.2f})"
    return locations.Geocoded(found.lon, found.lat, found.score, found.type), {"method": "geocoded", "detail": detail}


@router.patch(
    "/locations/{location_id}",
    response_model=LocationOut,
    responses={**documented(), **_CONDITIONAL},
    openapi_extra=merge_patch(LocationPatch),
)
async def update_location(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    location_id: Annotated[uuid.UUID, Path()],
    in_scope: LocationInScope,
    versions: Versions,
    body: LocationPatch,
) -> JSONText:
    """Change some fields of a location (JSON Merge Patch). Needs If-Match.

    Only the location's own organisation changes its `visibility`, and the place (`point`, `address`,
    `commune_code`) of a confidential one: from anyone else (admins) such a body is a 422 naming the
    field, answered after the If-Match check and before anything reads the stored place. A change of
    visibility is recorded in the history (action `visibility`) and in the audit journal."""
    _, changes = await locations.update(
        session, location_id, body, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    if "visibility" in changes:  # publishing or hiding a location: the owner's act, journalled
        Entry(request, principal, "location.visibility", "location", location_id).in_transaction(session)
    await session.commit()
    return await _location(conn, location_id, principal)


@router.delete(
    "/locations/{location_id}",
    status_code=204,
    responses=problem_responses(401, 403, 404, 409, 412, 413, 422, 428, 429),
)
async def archive_location(
    request: Request,
    session: SessionDep,
    principal: Writer,
    location_id: Annotated[uuid.UUID, Path()],
    versions: Versions,
) -> Response:
    """Archive a location no service uses any more. Needs If-Match."""
    await locations.archive(
        session, location_id, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return Response(status_code=204)


# --- service areas -----------------------------------------------------------------------------


async def _area(conn: ReaderDep, area_id: uuid.UUID, principal: Principal, *, status: int = 200) -> JSONText:
    body, version = await areas.get(conn, area_id, viewer=principal)
    headers = {"ETag": etag(version)}
    if status == 201:
        headers["Location"] = absolute(f"/v1/service-areas/{area_id}")
    return JSONText(body, status_code=status, headers=headers)


@router.get(
    "/service-areas/{area_id}",
    response_model=AreaOut,
    responses={**documented(links=area_links("$request.path.area_id")), **problem_responses(401, 403, 404, 422)},
)
async def get_area(conn: ReaderDep, principal: Manager, area_id: Annotated[uuid.UUID, Path()]) -> JSONText:
    """A service area of your organisation, with its ETag."""
    return await _area(conn, area_id, principal)


@router.post(
    "/service-areas",
    status_code=201,
    response_model=AreaOut,
    responses={**documented(201, links=area_links(ID)), **_WRITE},
)
async def create_area(
    request: Request, session: SessionDep, conn: ReaderDep, principal: Writer, body: AreaCreate
) -> JSONText:
    """Add an area a service takes people from: communes, départements, collectivités, régions, a radius
    around its location, or France as a whole."""
    area = await areas.create(session, body, actor=principal, request_id=_request_id(request))
    await session.commit()
    return await _area(conn, area.id, principal, status=201)


@router.patch(
    "/service-areas/{area_id}",
    response_model=AreaOut,
    responses={**documented(), **_CONDITIONAL},
    openapi_extra=merge_patch(AreaPatch),
)
async def update_area(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Writer,
    area_id: Annotated[uuid.UUID, Path()],
    in_scope: AreaInScope,
    versions: Versions,
    body: AreaPatch,
) -> JSONText:
    """Change a service area (JSON Merge Patch). Needs If-Match."""
    await areas.update(
        session, area_id, body, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _area(conn, area_id, principal)


@router.delete("/service-areas/{area_id}", status_code=204, responses=_CONDITIONAL)
async def archive_area(
    request: Request,
    session: SessionDep,
    principal: Writer,
    area_id: Annotated[uuid.UUID, Path()],
    versions: Versions,
) -> Response:
    """Remove a service area. Needs If-Match."""
    await areas.archive(session, area_id, expected_version=versions, actor=principal, request_id=_request_id(request))
    await session.commit()
    return Response(status_code=204)
