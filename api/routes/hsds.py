"""Open Referral HSDS 3.0 read API: the published directory in the exchange format of the field.

Paths and parameters follow the HSDS 3.0 reference API (its names, snake_case included). Pages are
numbered (`page`, `per_page`, `total_pages`) as that API defines them: a deliberate exception to
the cursor rule of the rest of /v1, so that HSDS tools read Maillage unchanged. Every listed service
is published as a viewer who may see no safe house sees it, whoever asks (directory/publication.py).
A parameter of the reference API that Maillage does not implement (`full`, `minimal`, `format`,
`modified_after`, `postcode`, `proximity`…) is refused with a 422 naming it, never silently ignored:
an ignored filter would read as an applied one.
"""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query

from directory import publication
from directory.errors import NotFound
from directory.schemas import Text
from sync import hsds

from ..auth import AnyRole
from ..db import ReaderDep
from ..errors import InvalidParameter, problem_responses
from ..links import absolute
from ..params import defined_query_only

router = APIRouter(prefix="/v1/hsds", tags=["hsds"], dependencies=[Depends(defined_query_only)])

MAX_PER_PAGE = 100
# Numbered pages cost their offset: past a million items, the dump (`maillage export hsds`) reads it all.
MAX_PAGE = 10_000

PageNumber = Annotated[int, Query(ge=1, le=MAX_PAGE, description="Page number, from 1.")]
PerPage = Annotated[int, Query(ge=1, le=MAX_PER_PAGE, description=f"Items per page (1 to {MAX_PER_PAGE}).")]
Search = Annotated[Text | None, Query(min_length=2, max_length=200, description="Full text, French, accents ignored.")]
TaxonomyTermId = Annotated[
    uuid.UUID | None, Query(description="Only services with this taxonomy term (see /v1/hsds/taxonomy_terms).")
]
TaxonomyId = Annotated[
    uuid.UUID | None, Query(description="Only services with a term of this taxonomy (see /v1/hsds/taxonomies).")
]
OrganizationId = Annotated[uuid.UUID | None, Query(description="Only this organisation's services.")]


async def _taxonomies(conn: ReaderDep) -> hsds.Taxonomies:
    return hsds.Taxonomies(absolute("/"), await publication.sources(conn))


def _service_filter(
    taxonomies: hsds.Taxonomies,
    search: str | None,
    taxonomy_term_id: uuid.UUID | None,
    taxonomy_id: uuid.UUID | None,
    organization_id: uuid.UUID | None,
    *,
    placed: bool,
) -> publication.ServiceFilter:
    """The listed services these HSDS parameters select; a taxonomy or term that does not exist is a
    422 naming the parameter (an empty page would read as "no such service")."""
    by_key: dict[str, tuple[str, ...]] = {}
    if taxonomy_id is not None:
        key = taxonomies.key_by_id(str(taxonomy_id))
        if key is None:
            raise InvalidParameter("taxonomy_id", "no such taxonomy")
        by_key[key] = tuple(code for (k, code) in taxonomies.terms if k == key)
    if taxonomy_term_id is not None:
        term = taxonomies.term_by_id(str(taxonomy_term_id))
        if term is None:
            raise InvalidParameter("taxonomy_term_id", "no such taxonomy term")
        key, code = term
        by_key[key] = tuple(c for c in by_key.get(key, (code,)) if c == code)
    specialisms = by_key.get("specialisms")
    if "data_inclusion" in by_key:  # a thématique stands for the specialisms it is the closest one of
        closest = hsds.specialisms_of(by_key["data_inclusion"])
        specialisms = tuple(s for s in specialisms if s in closest) if specialisms is not None else closest
    return publication.ServiceFilter(
        text=search.strip() if search else None,
        specialisms=specialisms,
        audiences=by_key.get("audiences"),
        channels=by_key.get("channels"),
        sources=by_key.get("sources"),
        organisation_id=organization_id,
        placed=placed,
    )


_ERRORS = problem_responses(401, 403, 422)
_ONE = problem_responses(401, 403, 404, 422)


@router.get("", response_model=hsds.About, responses=problem_responses(401, 403))
async def hsds_about(_: AnyRole) -> hsds.About:
    """The HSDS version this API speaks and where its OpenAPI document is."""
    return hsds.About(version=hsds.HSDS_VERSION, openapi_url=absolute("/openapi.json"))


@router.get("/services", response_model=hsds.Page[hsds.Service], response_model_exclude_none=True, responses=_ERRORS)
async def hsds_services(
    _: AnyRole,
    conn: ReaderDep,
    page: PageNumber = 1,
    per_page: PerPage = 50,
    search: Search = None,
    taxonomy_term_id: TaxonomyTermId = None,
    taxonomy_id: TaxonomyId = None,
    organization_id: OrganizationId = None,
) -> hsds.Page[hsds.Service]:
    """Listed services as HSDS 3.0 services, fully nested (organisation, place, schedules, areas,
    taxonomy terms), by id. A confidential place (a safe house) is its commune, its commune's point
    and its front-door contact. A page past the last one is empty."""
    taxonomies = await _taxonomies(conn)
    which = _service_filter(taxonomies, search, taxonomy_term_id, taxonomy_id, organization_id, placed=False)
    total = await publication.count_services(conn, which)
    rows = await publication.services(conn, which, offset=(page - 1) * per_page, limit=per_page)
    return hsds.page_of([hsds.service(row, taxonomies) for row in rows], total=total, page=page, per_page=per_page)


@router.get("/services/{service_id}", response_model=hsds.Service, response_model_exclude_none=True, responses=_ONE)
async def hsds_service(_: AnyRole, conn: ReaderDep, service_id: Annotated[uuid.UUID, Path()]) -> hsds.Service:
    """One listed service as an HSDS 3.0 service."""
    rows = await publication.services(conn, publication.ServiceFilter(ids=(service_id,)), limit=1)
    if not rows:
        raise NotFound("no such service")
    return hsds.service(rows[0], await _taxonomies(conn))


@router.get(
    "/service_at_locations",
    response_model=hsds.Page[hsds.ServiceAtLocation],
    response_model_exclude_none=True,
    responses=_ERRORS,
)
async def hsds_service_at_locations(
    _: AnyRole,
    conn: ReaderDep,
    page: PageNumber = 1,
    per_page: PerPage = 50,
    search: Search = None,
    taxonomy_term_id: TaxonomyTermId = None,
    taxonomy_id: TaxonomyId = None,
    organization_id: OrganizationId = None,
) -> hsds.Page[hsds.ServiceAtLocation]:
    """Where listed services receive people: one entry per service that has a place, named by the
    service's id (a service has one place in Maillage), with the place as published."""
    which = _service_filter(
        await _taxonomies(conn), search, taxonomy_term_id, taxonomy_id, organization_id, placed=True
    )
    total = await publication.count_services(conn, which)
    rows = await publication.services(conn, which, offset=(page - 1) * per_page, limit=per_page)
    return hsds.page_of([hsds.service_at_location(row) for row in rows], total=total, page=page, per_page=per_page)


@router.get(
    "/service_at_locations/{service_at_location_id}",
    response_model=hsds.ServiceAtLocation,
    response_model_exclude_none=True,
    responses=_ONE,
)
async def hsds_service_at_location(
    _: AnyRole, conn: ReaderDep, service_at_location_id: Annotated[uuid.UUID, Path()]
) -> hsds.ServiceAtLocation:
    """One service's place (the id is the service's)."""
    which = publication.ServiceFilter(ids=(service_at_location_id,), placed=True)
    rows = await publication.services(conn, which, limit=1)
    if not rows:
        raise NotFound("no such service at location")
    return hsds.service_at_location(rows[0])


@router.get(
    "/organizations",
    response_model=hsds.Page[hsds.Organization],
    response_model_exclude_none=True,
    responses=_ERRORS,
)
async def hsds_organizations(
    _: AnyRole, conn: ReaderDep, page: PageNumber = 1, per_page: PerPage = 50, search: Search = None
) -> hsds.Page[hsds.Organization]:
    """Active organisations (as /v1/organisations lists them), by id; /organizations/{id} adds their
    places."""
    text = search.strip() if search else None
    total = await publication.count_organisations(conn, text=text)
    rows = await publication.organisations(conn, text=text, offset=(page - 1) * per_page, limit=per_page)
    return hsds.page_of([hsds.organization(row) for row in rows], total=total, page=page, per_page=per_page)


@router.get(
    "/organizations/{organization_id}",
    response_model=hsds.Organization,
    response_model_exclude_none=True,
    responses=_ONE,
)
async def hsds_organization(
    _: AnyRole, conn: ReaderDep, organization_id: Annotated[uuid.UUID, Path()]
) -> hsds.Organization:
    """One active organisation with the places of its listed services, as published."""
    rows = await publication.organisations(conn, ids=(organization_id,), places=True, limit=1)
    if not rows:
        raise NotFound("no such organization")
    return hsds.organization(rows[0], with_places=True)


@router.get("/taxonomies", response_model=hsds.Page[hsds.Taxonomy], response_model_exclude_none=True, responses=_ERRORS)
async def hsds_taxonomies(
    _: AnyRole, conn: ReaderDep, page: PageNumber = 1, per_page: PerPage = 50
) -> hsds.Page[hsds.Taxonomy]:
    """The taxonomies of the services' attributes: Maillage's specialisms, the closest data·inclusion
    thématiques, audiences, channels, and the sources of imported listings."""
    items = list((await _taxonomies(conn)).taxonomies.values())
    return _slice(items, page, per_page)


@router.get("/taxonomies/{taxonomy_id}", response_model=hsds.Taxonomy, response_model_exclude_none=True, responses=_ONE)
async def hsds_taxonomy(_: AnyRole, conn: ReaderDep, taxonomy_id: Annotated[uuid.UUID, Path()]) -> hsds.Taxonomy:
    """One taxonomy."""
    taxonomies = await _taxonomies(conn)
    key = taxonomies.key_by_id(str(taxonomy_id))
    if key is None:
        raise NotFound("no such taxonomy")
    return taxonomies.taxonomies[key]


@router.get(
    "/taxonomy_terms",
    response_model=hsds.Page[hsds.TaxonomyTerm],
    response_model_exclude_none=True,
    responses=_ERRORS,
)
async def hsds_taxonomy_terms(
    _: AnyRole,
    conn: ReaderDep,
    page: PageNumber = 1,
    per_page: PerPage = 50,
    taxonomy_id: Annotated[uuid.UUID | None, Query(description="Only the terms of this taxonomy.")] = None,
) -> hsds.Page[hsds.TaxonomyTerm]:
    """Every term of every taxonomy (or of one), in a fixed order, each with its taxonomy."""
    taxonomies = await _taxonomies(conn)
    keys = list(taxonomies.terms)
    if taxonomy_id is not None:
        key = taxonomies.key_by_id(str(taxonomy_id))
        if key is None:
            raise InvalidParameter("taxonomy_id", "no such taxonomy")
        keys = [k for k in keys if k[0] == key]
    return _slice([taxonomies.detailed(*k) for k in keys], page, per_page)


@router.get(
    "/taxonomy_terms/{taxonomy_term_id}",
    response_model=hsds.TaxonomyTerm,
    response_model_exclude_none=True,
    responses=_ONE,
)
async def hsds_taxonomy_term(
    _: AnyRole, conn: ReaderDep, taxonomy_term_id: Annotated[uuid.UUID, Path()]
) -> hsds.TaxonomyTerm:
    """One taxonomy term, with its taxonomy."""
    taxonomies = await _taxonomies(conn)
    term = taxonomies.term_by_id(str(taxonomy_term_id))
    if term is None:
        raise NotFound("no such taxonomy term")
    return taxonomies.detailed(*term)


def _slice(items: list[hsds.T], page: int, per_page: int) -> hsds.Page[hsds.T]:
    start = (page - 1) * per_page
    return hsds.page_of(items[start : start + per_page], total=len(items), page=page, per_page=per_page)
