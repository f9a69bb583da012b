"""Referral statistics for départements (their own territory only), and the national view for the 119.

No figure ever concerns fewer than k children (see directory/stats.py for the three layers of
protection). A department token is pinned to its collectivité: naming another one, in any spelling,
is a 404 or a 422, never a figure. Every query is journalled and rate-limited per caller.
"""

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from directory import stats
from directory.access import Principal, Role
from directory.errors import NotFound
from directory.pathway_models import Beneficiary, HandoffKind, Urgency
from directory.taxonomy import SLUGS

from ..audit import AuditedAllow, Entry, record, trail
from ..auth import _bearer_scheme
from ..db import ReaderDep
from ..errors import InvalidParameter, RateLimited, problem_responses
from ..schemas import CoverageOut, NeedsOut, StatsOut

router = APIRouter(prefix="/v1/stats", tags=["statistics"])


class Statistics(AuditedAllow):
    """Departments, the 119 and admins, at most `stats_queries_per_minute` queries a minute each. Every
    query is journalled, refusals included: recovering a child from noisy figures takes many queries,
    and the journal shows who asked how many."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        _: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)],
        conn: ReaderDep,
    ) -> Principal:
        principal = await super().__call__(request, _, conn)
        try:
            await request.app.state.stats_limiter.hit(principal.subject)
        except RateLimited:
            await record(conn, Entry(request, principal, self.action, self.object_type), 429)
            raise
        return principal


Analyst = Annotated[
    Principal, Depends(Statistics("stats.read", "statistics", Role.department, Role.specialist, Role.admin))
]
_MONTH = re.compile(r"^(20[0-9]{2})-(0[1-9]|1[0-2])$")
_COLLECTIVITE = re.compile(r"^[0-9]{1,3}[A-Z]{1,2}$")
_CSV: dict[int | str, dict[str, Any]] = {200: {"content": {"text/csv": {}}}}


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise InvalidParameter(name, "give this parameter once")
    return values[0] if values else None


async def _territory(request: Request, conn: ReaderDep, principal: Principal) -> list[str] | None:
    """The collectivités in scope: a department's own, whatever it asks; for the 119 and admins the one
    asked for, or the whole country (None)."""
    asked = _single(request, "collectivite")
    if asked is not None and not _COLLECTIVITE.fullmatch(asked):
        raise InvalidParameter("collectivite", "a collectivité code such as 93D, 69M or 20R")
    if principal.role is Role.department:
        if asked is not None and asked != principal.collectivite_code:
            raise NotFound("no such collectivité in your scope")
        return [str(principal.collectivite_code)]
    if asked is None:
        return None
    known = await (await conn.execute("SELECT 1 FROM collectivite WHERE code = %s", (asked,))).fetchone()
    if known is None:
        raise NotFound(f"no collectivité with code {asked!r}")
    return [asked]


def _month(value: str | None, name: str, default: date) -> date:
    if value is None:
        return default
    match = _MONTH.fullmatch(value)
    if not match:
        raise InvalidParameter(name, "a month as YYYY-MM")
    return date(int(match[1]), int(match[2]), 1)


def _period(request: Request) -> tuple[date, date, str, str]:
    today = datetime.now(UTC).date().replace(day=1)
    last = _month(_single(request, "to"), "to", today)
    first = _month(
        _single(request, "from"),
        "from",
        date(last.year - 1, last.month, 1) if last.month != 12 else date(last.year, 1, 1),
    )
    if first > last:
        raise InvalidParameter("from", "the period starts after it ends")
    if (last.year - first.year) * 12 + last.month - first.month >= 60:
        raise InvalidParameter("from", "at most 60 months at a time")
    end = date(last.year + (last.month == 12), last.month % 12 + 1, 1)
    return first, end, first.strftime("%Y-%m"), last.strftime("%Y-%m")


def _group_by(request: Request) -> tuple[str, ...]:
    raw = [part for value in request.query_params.getlist("group_by") for part in value.split(",") if part]
    unknown = [d for d in raw if d not in stats.GROUPABLE]
    if unknown:
        raise InvalidParameter("group_by", f"unknown dimension {unknown[0]!r}: one of {', '.join(stats.GROUPABLE)}")
    if len(set(raw)) != len(raw) or len(raw) > 4:
        raise InvalidParameter("group_by", "up to 4 distinct dimensions")
    return tuple(raw)


@router.get("/handoffs", response_model=StatsOut, responses={**_CSV, **problem_responses(401, 403, 404, 422, 429)})
async def handoff_statistics(
    request: Request,
    conn: ReaderDep,
    principal: Analyst,
    collectivite: Annotated[str | None, Query(description="Departments: their own (the default).")] = None,
    from_: Annotated[
        str | None, Query(alias="from", description="First month, YYYY-MM (default: 12 months ago).")
    ] = None,
    to: Annotated[str | None, Query(description="Last month, YYYY-MM (default: this month).")] = None,
    group_by: Annotated[
        list[str] | None, Query(description=f"Any of {', '.join(stats.GROUPABLE)}; repeatable.")
    ] = None,
    kind: HandoffKind | None = None,
    urgency: Urgency | None = None,
    beneficiary: Beneficiary | None = None,
    receiver_kind: Annotated[str | None, Query(pattern=r"^[a-z_]{2,32}$")] = None,
    specialism: Annotated[str | None, Query(max_length=64)] = None,
) -> Response:
    """How referrals flow: handoffs, distinct cases, acceptance, declines by reason, failures, time to
    acknowledgement and to acceptance, overdue handoffs, cases with a runaway — per cell of the grouping,
    with small-cell protection. `Accept: text/csv` returns the same cells as CSV."""
    async with trail(request, conn, principal, action="stats.handoffs.read", object_type="statistics"):
        territory = await _territory(request, conn, principal)
        start, end, first, last = _period(request)
        dims = _group_by(request)
        filters: dict[str, str] = {}
        for name in stats.FILTERABLE:
            value = _single(request, name)
            if value is not None:
                filters[name] = value
        if specialism is not None and specialism not in SLUGS:
            raise InvalidParameter("specialism", f"unknown specialism {specialism!r}")
        k = request.app.state.settings.stats_k
        query = stats.Query(collectivites=territory, start=start, end=end, group_by=dims, filters=filters, k=k)
        table = await stats.handoff_table(conn, query, now=datetime.now(UTC))
        if "text/csv" in request.headers.get("accept", ""):
            return Response(
                stats.to_csv(dims, table["cells"]),
                media_type="text/csv; charset=utf-8",
                headers={"Content-Disposition": 'attachment; filename="handoffs.csv"'},
            )
        body: dict[str, Any] = {
            "k": k,
            "suppression": stats.RULE,
            "filters": {"collectivite": territory, "from": first, "to": last, **filters},
            "group_by": list(dims),
            "cells": table["cells"],
            "total": table["total"],
        }
        return JSONResponse(body)


@router.get("/needs", response_model=NeedsOut, responses=problem_responses(401, 403, 404, 422, 429))
async def need_statistics(
    request: Request,
    conn: ReaderDep,
    principal: Analyst,
    collectivite: Annotated[str | None, Query()] = None,
    from_: Annotated[str | None, Query(alias="from")] = None,
    to: Annotated[str | None, Query()] = None,
) -> dict[str, Any]:
    """Unmet-need signals per collectivité and specialism: searches that found nothing (counted per
    commune, never the point), handoffs declined for lack of capacity or out of territory, and handoffs
    that expired. Counts under k are suppressed."""
    async with trail(request, conn, principal, action="stats.needs.read", object_type="statistics"):
        territory = await _territory(request, conn, principal)
        start, end, first, last = _period(request)
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
    request: Request,
    conn: ReaderDep,
    principal: Analyst,
    collectivite: Annotated[str | None, Query()] = None,
    specialism: Annotated[list[str] | None, Query(max_length=16, description="Repeatable; default: all.")] = None,
    within_km: Annotated[float, Query(gt=0, le=100, allow_inf_nan=False)] = 20,
    min_population: Annotated[
        int, Query(ge=0, le=1_000_000, description="List uncovered communes from this size.")
    ] = 1000,
    geometry: Annotated[bool, Query(description="Add a GeoJSON of the uncovered communes.")] = False,
) -> dict[str, Any]:
    """Where the territory's network has holes: per specialism, the share of the population living within
    `within_km` of an active service, and the uncovered communes. Carries no case data."""
    async with trail(request, conn, principal, action="stats.coverage.read", object_type="statistics"):
        territory = await _territory(request, conn, principal)
        unknown = sorted(set(specialism or ()) - SLUGS)
        if unknown:
            raise InvalidParameter("specialism", f"unknown specialism {unknown[0]!r}")
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
