"""Organisations and the specialism taxonomy."""

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from directory import areas, history, locations, organisations
from directory.access import Principal, Role, Scoped
from directory.models import OrganisationKind
from directory.revisions import Expected
from directory.schemas import OrganisationCreate, OrganisationPatch, VerificationUpdate
from directory.taxonomy import SPECIALISMS, VERSION

from ..auth import Allow, AllowWrites, AnyRole
from ..db import ReaderDep, SessionDep
from ..errors import problem_responses
from ..etags import documented, etag, if_match
from ..links import ETAG, ID, absolute, follow
from ..pagination import Pagination
from ..params import Cursor, Limit, merge_patch
from ..responses import JSONText, items_page
from ..schemas import AreaPage, Freshness, LocationPage, OrganisationDetail, OrganisationList, Taxonomy
from ..scoping import InScope

router = APIRouter(prefix="/v1", tags=["organisations"])


@router.get("/organisations", response_model=OrganisationList, responses=problem_responses(401, 403, 422))
async def list_organisations(
    request: Request,
    conn: ReaderDep,
    principal: AnyRole,
    kind: OrganisationKind | None = None,
    collective: Annotated[
        str | None, Query(pattern=r"^[a-z0-9-]{2,64}$", description="e.g. ensemble-contre-la-traite")
    ] = None,
    collectivite: Annotated[
        str | None, Query(pattern=r"^[0-9]{1,3}[A-Z]{1,2}$", description="Acting for this collectivité.")
    ] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """Organisations by name: associations, CRIPs, public services…"""
    page = Pagination(request, "organisations", 2, limit=limit, cursor=cursor)
    rows = await organisations.list_(
        conn,
        viewer=principal,
        kind=kind,
        collective=collective,
        collectivite=collectivite,
        after=page.after,
        limit=page.fetch,
    )
    rows, links = page.finish(rows, key=lambda row: [row[0], row[1]])
    return items_page((row[2] for row in rows), links)


def _organisation_links(organisation_id: str) -> dict[str, Any]:
    """What an admin does with an organisation; what anyone reads of it."""
    return {
        "GetOrganisation": follow("get_organisation", "Read it again.", organisation_id=organisation_id),
        "Update": follow("update_organisation", "Change it.", organisation_id=organisation_id, if_match=ETAG),
        "Verify": follow("set_verification", "Record a verification.", organisation_id=organisation_id),
        "Freshness": follow("freshness", "How fresh its listings are.", organisation_id=organisation_id),
        "Locations": follow("list_locations", "Its locations.", organisation_id=organisation_id),
        "ServiceAreas": follow("list_service_areas", "Its service areas.", organisation_id=organisation_id),
        "Deactivate": follow("deactivate_organisation", "Deactivate it.", organisation_id=organisation_id),
    }


@router.get(
    "/organisations/{organisation_id}",
    response_model=OrganisationDetail,
    responses={
        **documented(links=_organisation_links("$request.path.organisation_id")),
        **problem_responses(401, 403, 404, 422),
    },
)
async def get_organisation(
    conn: ReaderDep, principal: AnyRole, organisation_id: Annotated[uuid.UUID, Path()]
) -> JSONText:
    """One organisation with its current services. The ETag is what an admin's PATCH sends in If-Match."""
    body, version = await organisations.get(conn, organisation_id, viewer=principal)
    return JSONText(body, headers={"ETag": etag(version)})


# --- admin writes ------------------------------------------------------------------------------

Admin = Annotated[Principal, Depends(AllowWrites(Role.admin))]
OrganisationId = Annotated[uuid.UUID, Path()]
OrganisationInScope = Annotated[None, Depends(InScope(Scoped.organisation, "organisation_id"))]
_ADMIN_WRITE = problem_responses(401, 403, 404, 413, 422, 429)


async def _organisation(
    conn: ReaderDep, organisation_id: uuid.UUID, principal: Principal, *, status: int = 200
) -> JSONText:
    body, version = await organisations.get(conn, organisation_id, viewer=principal)
    headers = {"ETag": etag(version)}
    if status == 201:
        headers["Location"] = absolute(f"/v1/organisations/{organisation_id}")
    return JSONText(body, status_code=status, headers=headers)


def _request_id(request: Request) -> str | None:
    return request.scope.get("state", {}).get("request_id")


@router.post(
    "/organisations",
    status_code=201,
    response_model=OrganisationDetail,
    responses={**documented(201, links=_organisation_links(ID)), **_ADMIN_WRITE},
)
async def create_organisation(
    request: Request, session: SessionDep, conn: ReaderDep, principal: Admin, body: OrganisationCreate
) -> JSONText:
    """Register an organisation (admins). It starts unverified."""
    organisation = await organisations.create(session, body, actor=principal, request_id=_request_id(request))
    await session.commit()
    return await _organisation(conn, organisation.id, principal, status=201)


@router.patch(
    "/organisations/{organisation_id}",
    response_model=OrganisationDetail,
    responses={**documented(), **problem_responses(401, 403, 404, 412, 413, 422, 428, 429)},
    openapi_extra=merge_patch(OrganisationPatch),
)
async def update_organisation(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Admin,
    organisation_id: OrganisationId,
    in_scope: OrganisationInScope,
    versions: Annotated[Expected, Depends(if_match)],
    body: OrganisationPatch,
) -> JSONText:
    """Change an organisation (admins; JSON Merge Patch). Needs If-Match."""
    await organisations.update(
        session, organisation_id, body, expected_version=versions, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _organisation(conn, organisation_id, principal)


@router.post(
    "/organisations/{organisation_id}/deactivate",
    response_model=OrganisationDetail,
    responses={**documented(), **_ADMIN_WRITE},
)
async def deactivate_organisation(
    request: Request, session: SessionDep, conn: ReaderDep, principal: Admin, organisation_id: OrganisationId
) -> JSONText:
    """Deactivate an organisation (admins): its listings leave search and its clients get no more tokens."""
    await organisations.deactivate(session, organisation_id, actor=principal, request_id=_request_id(request))
    await session.commit()
    return await _organisation(conn, organisation_id, principal)


@router.post(
    "/organisations/{organisation_id}/verification",
    response_model=OrganisationDetail,
    responses={**documented(), **_ADMIN_WRITE},
)
async def set_verification(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: Admin,
    organisation_id: OrganisationId,
    in_scope: OrganisationInScope,
    body: VerificationUpdate,
) -> JSONText:
    """Mark an organisation verified, e.g. once its membership of the collective is confirmed (admins)."""
    await organisations.set_verification(
        session, organisation_id, body, actor=principal, request_id=_request_id(request)
    )
    await session.commit()
    return await _organisation(conn, organisation_id, principal)


@router.get(
    "/organisations/{organisation_id}/freshness",
    response_model=Freshness,
    responses=problem_responses(401, 403, 404, 422),
)
async def freshness(
    conn: ReaderDep,
    principal: Annotated[Principal, Depends(Allow(Role.partner, Role.admin))],
    organisation_id: OrganisationId,
    within_days: Annotated[int, Query(ge=0, le=180, description="Also what falls due within this many days.")] = 30,
) -> JSONText:
    """Listings of an organisation that need re-verifying: stale (180 days without verification) or
    about to be."""
    return JSONText(
        await history.freshness(conn, organisation_id, viewer=principal, within_days=within_days, now=datetime.now(UTC))
    )


Manager = Annotated[Principal, Depends(Allow(Role.partner, Role.admin))]


@router.get(
    "/organisations/{organisation_id}/locations",
    response_model=LocationPage,
    responses=problem_responses(401, 403, 404, 422),
)
async def list_locations(
    request: Request,
    conn: ReaderDep,
    principal: Manager,
    organisation_id: OrganisationId,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """Your organisation's current locations, oldest first, with their ids (admins: any organisation's,
    confidential ones at their commune)."""
    page = Pagination(request, f"locations:{organisation_id}", 2, limit=limit, cursor=cursor)
    rows = await locations.of_organisation(conn, organisation_id, viewer=principal, after=page.after, limit=page.fetch)
    rows, links = page.finish(rows, key=lambda row: [row[0], row[1]])
    return items_page((row[2] for row in rows), links)


@router.get(
    "/organisations/{organisation_id}/service-areas",
    response_model=AreaPage,
    responses=problem_responses(401, 403, 404, 422),
)
async def list_service_areas(
    request: Request,
    conn: ReaderDep,
    principal: Manager,
    organisation_id: OrganisationId,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """The current areas of your organisation's current services, oldest first, with their ids and
    their service's (admins: any organisation's)."""
    page = Pagination(request, f"service-areas:{organisation_id}", 2, limit=limit, cursor=cursor)
    rows = await areas.of_organisation(conn, organisation_id, viewer=principal, after=page.after, limit=page.fetch)
    rows, links = page.finish(rows, key=lambda row: [row[0], row[1]])
    return items_page((row[2] for row in rows), links)


@router.get("/specialisms", response_model=Taxonomy, responses=problem_responses(401, 403))
async def list_specialisms(_: AnyRole) -> Taxonomy:
    """The specialism taxonomy: stable slugs, labels, and the closest data·inclusion thématique."""
    return Taxonomy(
        version=VERSION,
        items=[
            {"slug": s.slug, "label_fr": s.label_fr, "label_en": s.label_en, "data_inclusion": s.data_inclusion}
            for s in SPECIALISMS
        ],
    )
