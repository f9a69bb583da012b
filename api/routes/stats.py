"""Referral statistics for départements (their own territory only), and the national view for the 119.

No figure ever concerns fewer than k children (see directory/stats.py for the layers of protection),
and no answer depends on whether one more child exists in a group under k. A department token is
pinned to its collectivité: naming another one, in any spelling, is a 404 or a 422, never a figure.
Every query is journalled and rate-limited per caller.

Each route declares its parameters (so that the OpenAPI document states their forms) and the checks
run in a fixed order, each as a dependency solved before the next: authentication (401) → role (403)
→ rate limit (429) → repeated `collectivite` (422) → its form (422) → scope (404) → any other repeated
single-valued parameter (422) → the other parameters' forms (422) → checks across parameters (422) →
the work. `_journal` wraps all of it after the role check, so refusals are journalled too.
"""

from collections.abc import AsyncIterator, Callable
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from directory import access, stats
from directory.access import Principal, Role
from directory.models import OrganisationKind
from directory.pathway_models import Beneficiary, HandoffKind, Urgency
from directory.schemas import SpecialismSlug
from directory.taxonomy import SLUGS

from ..audit import AuditedAllow, Entry, record
from ..auth import _bearer_scheme
from ..db import ReaderDep
from ..errors import InvalidParameter, RateLimited, problem_responses, status_for
from ..responses import negotiate
from ..schemas import CoverageOut, NeedsOut, StatsOut

router = APIRouter(prefix="/v1/stats", tags=["statistics"])


class Statistics(AuditedAllow):
    """Departments, the 119 and admins, at most `stats_queries_per_minute` queries a minute each. Every
    query is journalled, refusals included: recovering a child from noisy figures takes many queries,
    and the journal shows who asked how many."""

    async def __call__(
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        conn: ReaderDep,
    ) -> Principal:
        principal = await super().__call__(request, _, conn)
        try:
            await request.app.state.stats_limiter.hit(conn, principal.key)
        except RateLimited:
            await record(conn, Entry(request, principal, self.action, self.object_type), 429)
            raise
        return principal


Analyst = Annotated[
    Principal, Depends(Statistics("stats.read", "statistics", Role.department, Role.specialist, Role.admin))
]
MONTH = r"^20[0-9]{2}-(0[1-9]|1[0-2])$"
COLLECTIVITE = r"^[0-9]{1,3}[A-Z]{1,2}$"
_CSV: dict[int | str, dict[str, Any]] = {
    200: {
        "content": {"text/csv": {"schema": {"type": "string"}}},
        "headers": {
            "Content-Disposition": {
                "description": 'With `text/csv` only: `attachment; filename="handoffs.csv"`.',
                "schema": {"type": "string"},
            }
        },
    }
}


def _journal(action: str) -> Callable[..., AsyncIterator[Entry]]:
    """Dependency: the query's journal entry, written once it is answered or refused — whether the
    refusal comes from a later dependency, from FastAPI's validation of the declared parameters, or
    from the route itself."""

    async def journal(request: Request, principal: Analyst, conn: ReaderDep) -> AsyncIterator[Entry]:
        entry = Entry(request, principal, action, "statistics")
        try:
            yield entry
        except RequestValidationError:
            await record(conn, entry, 422)
            raise
        except Exception as exc:
            await record(conn, entry, status_for(exc) or 500)
            raise
        await record(conn, entry, 200)

    return journal


def _once(*names: str) -> Callable[[Request], None]:
    """Dependency: refuse a repeated single-valued parameter (FastAPI would silently keep the last one),
    naming it. Only counts occurrences: the values are the declared parameters'."""

    def once(request: Request) -> None:
        for name in names:
            if len(request.query_params.getlist(name)) > 1:
                raise InvalidParameter(name, "give this parameter once")

    return once


async def _territory(
    principal: Analyst,
    conn: ReaderDep,
    _: Annotated[None, Depends(_once("collectivite"))],
    collectivite: Annotated[
        str | None,
        Query(
            pattern=COLLECTIVITE,
            description="A collectivité code such as 93D, 69M or 20R. Departments: their own (the default).",
        ),
    ] = None,
) -> list[str] | None:
    """Dependency: the collectivités in scope — a department's own, whatever it asks; for the 119 and
    admins the one asked for, or the whole country (None). Solved before the other parameters are
    validated: a department naming another collectivité gets the same 404 whatever else it sends, and
    never learns whether that code exists."""
    return await access.statistics_scope(conn, principal, collectivite)


Territory = Annotated[list[str] | None, Depends(_territory)]
From = Annotated[
    str | None, Query(alias="from", pattern=MONTH, description="First month, YYYY-MM (default: 12 months ago).")
]
To = Annotated[str | None, Query(pattern=MONTH, description="Last month, YYYY-MM (default: this month).")]


def _month(value: str) -> date:
    return date(int(value[:4]), int(value[5:7]), 1)


def _period(from_: str | None, to: str | None) -> tuple[date, date, str, str]:
    """First day, the first day after the last month, and both months as YYYY-MM."""
    last = _month(to) if to is not None else datetime.now(UTC).date().replace(day=1)
    default = date(last.year - 1, last.month, 1) if last.month != 12 else date(last.year, 1, 1)
    first = _month(from_) if from_ is not None else default
    if first > last:
        raise InvalidParameter("from", "the period starts after it ends")
    if (last.year - first.year) * 12 + last.month - first.month >= 60:
        raise InvalidParameter("from", "at most 60 months at a time")
    end = date(last.year + (last.month == 12), last.month % 12 + 1, 1)
    return first, end, first.strftime("%Y-%m"), last.strftime("%Y-%m")


def _retained(request: Request, start: date, what: str) -> None:
    """Refuse a period reaching months retention may have emptied, for a table counted from the handoffs."""
    since = stats.complete_since(datetime.now(UTC).date(), request.app.state.settings.case_retention_years)
    if start < since:
        raise InvalidParameter(
            "from",
            f"{what} start at {since:%Y-%m} at the earliest: retention has deleted older cases' handoffs",
        )


@router.get("/handoffs", response_model=StatsOut, responses={**_CSV, **problem_responses(401, 403, 404, 406, 422, 429)})
async def handoff_statistics(
    request: Request,
    conn: ReaderDep,
    principal: Analyst,
    _: Annotated[Entry, Depends(_journal("stats.handoffs.read"), scope="function")],
    territory: Territory,
    __: Annotated[None, Depends(_once("from", "to", "kind", "urgency", "beneficiary", "receiver_kind", "specialism"))],
    from_: From = None,
    to: To = None,
    group_by: Annotated[
        list[stats.Dimension] | None,
        Query(
            max_length=4,
            description="Up to 4 distinct dimensions; repeat the parameter for each.",
            json_schema_extra={"uniqueItems": True},
        ),
    ] = None,
    kind: HandoffKind | None = None,
    urgency: Urgency | None = None,
    beneficiary: Beneficiary | None = None,
    receiver_kind: OrganisationKind | None = None,
    specialism: Annotated[SpecialismSlug | None, Query(description="A specialism slug (GET /v1/specialisms).")] = None,
) -> Response:
    """How referrals flow: handoffs, distinct cases, acceptance, declines by reason, failures, time to
    acknowledgement and to acceptance, overdue handoffs, cases with a runaway — per cell of the grouping,
    with small-cell protection. Every combination of the grouping's values is a cell, in a fixed order,
    whether or not anything happened there; cells under k are `suppressed` with null figures.
    `Accept: text/csv` returns the same cells as CSV, after note lines starting with `#` that state k
    and the rule (negotiated with q-values, `api.responses.negotiate`; 406 when neither is acceptable)."""
    media_type = negotiate(request, ("application/json", "text/csv"))
    start, end, first, last = _period(from_, to)
    dims = tuple(d.value for d in group_by or ())
    if len(set(dims)) != len(dims):
        raise InvalidParameter("group_by", "up to 4 distinct dimensions")
    given = {"kind": kind, "urgency": urgency, "beneficiary": beneficiary, "receiver_kind": receiver_kind}
    filters = {name: str(value) for name, value in {**given, "specialism": specialism}.items() if value is not None}
    k = request.app.state.settings.stats_k
    query = stats.Query(collectivites=territory, start=start, end=end, group_by=dims, filters=filters, k=k)
    collectivites = await stats.collectivites_in_scope(conn, territory)
    if stats.table_cells(query, len(collectivites)) > stats.MAX_CELLS:
        raise InvalidParameter(
            "group_by",
            f"more than {stats.MAX_CELLS} cells: fewer dimensions, fewer months or one collectivité",
        )
    if not stats.from_rollups(query):
        _retained(request, start, "tables grouped or filtered by other dimensions than collectivite, month and kind")
    table = await stats.handoff_table(conn, query, collectivites=collectivites, now=datetime.now(UTC))
    if media_type == "text/csv":
        return Response(
            stats.to_csv(dims, table["cells"], k=k),
            media_type="text/csv; charset=utf-8",
            headers={"Content-Disposition": 'attachment; filename="handoffs.csv"', "Vary": "Accept"},
        )
    body: dict[str, Any] = {
        "k": k,
        "suppression": stats.RULE,
        "filters": {"collectivite": territory, "from": first, "to": last, **filters},
        "group_by": list(dims),
        "cells": table["cells"],
        "total": table["total"],
    }
    return JSONResponse(body, headers={"Vary": "Accept"})


@router.get("/needs", response_model=NeedsOut, responses=problem_responses(401, 403, 404, 422, 429))
async def need_statistics(
    request: Request,
    conn: ReaderDep,
    principal: Analyst,
    _: Annotated[Entry, Depends(_journal("stats.needs.read"), scope="function")],
    territory: Territory,
    __: Annotated[None, Depends(_once("from", "to"))],
    from_: From = None,
    to: To = None,
) -> dict[str, Any]:
    """Unmet-need signals per collectivité and specialism: searches that found nothing (counted per
    commune, never the point), handoffs declined for lack of capacity or out of territory, and handoffs
    that expired. Months under k are left out; a signal with nothing left is null, and a row with no
    signal left is not listed."""
    start, end, first, last = _period(from_, to)
    _retained(request, start, "unmet needs")
    k = request.app.state.settings.stats_k
    cells = await stats.needs(conn, collectivites=territory, start=start, end=end, k=k)
    return {
        "k": k,
        "suppression": stats.NEEDS_RULE,
        "filters": {"collectivite": territory, "from": first, "to": last},
        "cells": cells,
    }


@router.get("/coverage", response_model=CoverageOut, responses=problem_responses(401, 403, 404, 422, 429))
async def coverage_statistics(
    conn: ReaderDep,
    principal: Analyst,
    _: Annotated[Entry, Depends(_journal("stats.coverage.read"), scope="function")],
    territory: Territory,
    __: Annotated[None, Depends(_once("within_km", "min_population", "geometry"))],
    specialism: Annotated[
        list[SpecialismSlug] | None,
        Query(
            max_length=16,
            description="Specialism slugs (GET /v1/specialisms); repeatable; default: all but crip.",
        ),
    ] = None,
    within_km: Annotated[float, Query(gt=0, le=100, allow_inf_nan=False, description="Kilometres.")] = 20,
    min_population: Annotated[
        int, Query(ge=0, le=1_000_000, description="List uncovered communes from this size.")
    ] = 1000,
    geometry: Annotated[
        bool, Query(description="Add a GeoJSON of the uncovered communes (one collectivité at a time).")
    ] = False,
) -> dict[str, Any]:
    """Where the territory's network has holes: per specialism, the share of the population living within
    `within_km` of an active service, and the uncovered communes. Carries no case data."""
    wanted = sorted(set(specialism)) if specialism else sorted(SLUGS - {"crip"})
    if territory is None and geometry:
        raise InvalidParameter("geometry", "the map of uncovered communes is for one collectivité at a time")
    return await stats.coverage(
        conn,
        collectivites=territory,
        specialisms=wanted,
        within_km=within_km,
        min_population=min_population,
        with_geometry=geometry,
    )
