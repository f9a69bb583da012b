"""Organisations and the specialism taxonomy."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request

from directory import organisations
from directory.models import OrganisationKind
from directory.taxonomy import SPECIALISMS, VERSION

from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import InvalidParameter, problem_responses
from ..pagination import next_link
from ..params import Cursor, Limit
from ..responses import JSONText
from ..schemas import OrganisationDetail, OrganisationList, Taxonomy

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
    after = request.app.state.cursors.decode("organisations", cursor)
    if after is not None and (not isinstance(after, list) or len(after) != 2):
        raise InvalidParameter("cursor", "malformed cursor")
    rows = await organisations.list_(
        conn,
        viewer=principal,
        kind=kind,
        collective=collective,
        collectivite=collectivite,
        after=(after[0], after[1]) if after else None,
        limit=limit + 1,
    )
    links = ""
    if len(rows) > limit:
        rows = rows[:limit]
        href = next_link(request, request.app.state.cursors.encode("organisations", [rows[-1][0], rows[-1][1]]))
        links = '{"rel":"next","href":"' + href + '"}'
    return JSONText('{"items":[' + ",".join(row[2] for row in rows) + '],"links":[' + links + "]}")


@router.get(
    "/organisations/{organisation_id}",
    response_model=OrganisationDetail,
    responses=problem_responses(401, 403, 404, 422),
)
async def get_organisation(
    conn: ReaderDep, principal: AnyRole, organisation_id: Annotated[uuid.UUID, Path()]
) -> JSONText:
    """One organisation with its current services."""
    return JSONText(await organisations.get(conn, organisation_id, viewer=principal))


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
