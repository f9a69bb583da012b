"""Referral statistics for départements, private by design.

These figures concern very few children per territory, so small counts could identify a child. The
rules (directory/disclosure.py has the reasoning) are applied before anything leaves this module, and
they make every answer blind to one child: it is the same whether or not one more child exists in a
group under k.

1. Atoms. Handoffs are grouped into atoms — (collectivité, Paris month, kind) — and an atom with fewer
   than k distinct cases counts in no figure, whatever the query: no choice of periods, territories or
   kinds recovers it.
2. Complete tables. A query's table is built over its groupings and its filtered dimensions (in a fixed
   order) and holds every combination of their values — all months of the period × all kinds × … —
   whether or not any handoff falls there, in a fixed order. We publish the full cross-product rather
   than leave small groups out: the cells (their keys, their number, their order) then depend on the
   query alone, so no row can reveal that a small group exists, and the complementary suppression
   sees the very same table whichever cells are empty. Every dimension here has a small fixed domain
   (enumerations, the months asked for, the collectivités), so the table stays bounded: `MAX_CELLS`
   refuses the few combinations that would not.
3. Suppression. Cells under k distinct cases — empty ones included — are suppressed (null figures,
   `suppressed: true`), with complementary suppression along every line, and counts under k inside
   published cells (zero included) are masked the same way. Filters select from that table afterwards,
   and the total is the matching cell of the table over the filtered dimensions alone, protected the
   same way — the very cell a query without groupings returns.
4. Perturbation. Every published count moves by a noise of at most 2 that depends only on the handoffs
   it counts, so differences between queries do not give exact numbers of children; then a cell's
   counts are brought back within their logical bounds (`BOUNDS`), from published figures only.

Unmet needs (`needs`) are counted per (collectivité, specialism) — a domain of a hundred collectivités
by every specialism for the country — from month atoms of at least k: there, a row with nothing to
publish is left out entirely, which depends only on the atoms of k or more (see `needs`).

`entered_in_error` handoffs are excluded.

Where the figures come from: a table over collectivité, month and kind only is read from the handoff
rollups (directory/handoff_rollups.py), which give the very values `_scan` counts from the handoffs —
distinct cases, runaways, overdue at the moment of reading, percentiles — and still hold the months
retention has emptied; any other table is counted from the handoffs by `_scan`, which is also the
reference the rollups are tested against.
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum
from itertools import product
from typing import Any

from psycopg import AsyncConnection
from sqlmodel import Field, SQLModel

from . import coverage as coverage_table
from . import disclosure, handoff_rollups
from .models import OrganisationKind
from .pathway_models import Beneficiary, HandoffKind, HandoffStatus, IntakeChannel, Urgency
from .taxonomy import SLUGS

DECLINE_REASONS = ("no_capacity", "out_of_criteria", "out_of_territory", "refused_by_young_person", "other")
AGE_BANDS = ("0-9", "10-12", "13-15", "16-17", "18+")
AGE_BAND = """CASE WHEN c.age < 10 THEN '0-9' WHEN c.age <= 12 THEN '10-12' WHEN c.age <= 15 THEN '13-15'
                   WHEN c.age <= 17 THEN '16-17' ELSE '18+' END"""
# A declined handoff's reason, within the known reasons ('other' for anything else, so that the reasons
# always add up to the declines); null for a handoff that was not declined.
DECLINE_REASON = """CASE WHEN h.status = 'declined' THEN CASE WHEN h.decline_reason = ANY(%(reasons)s::text[])
                        THEN h.decline_reason ELSE 'other' END END"""
# Dimension → its SQL over the base rows (aliases h: handoff, c: case, ro: receiving organisation), in
# the fixed order tables are built in: the same cells are hidden whatever order a query names them.
DIMENSIONS = {
    "collectivite": "h.collectivite_code",
    "month": "h.created_month",  # a date: shown as YYYY-MM
    "kind": "h.kind",
    "status": "h.status",
    "receiver_kind": "ro.kind",
    "specialism": "nullif(sp.specialism, '')",
    "age_band": AGE_BAND,
    "intake_channel": "c.intake_channel",
    "decline_reason": DECLINE_REASON,
    "urgency": "h.urgency",
    "beneficiary": "h.beneficiary",
}
# A handoff's specialisms: those of the service it went to, or the case's needs when it named none, or
# '' (shown as null) when neither says, so that no handoff drops out of a grouping by specialism. A slug
# outside the taxonomy counts as '' too: every value stays within the dimension's domain.
SPECIALISMS = """CROSS JOIN LATERAL (SELECT DISTINCT CASE WHEN u.specialism = ANY(%(slugs)s::text[])
                     THEN u.specialism ELSE '' END AS specialism
                FROM unnest(coalesce(nullif(coalesce(
                     (SELECT sv.specialisms FROM service sv WHERE sv.id = h.receiver_service_id), c.needs),
                     '{}'), '{""}')) AS u(specialism)) AS sp"""


class Dimension(StrEnum):
    """What a table may be grouped by."""

    collectivite = "collectivite"
    month = "month"
    kind = "kind"
    status = "status"
    receiver_kind = "receiver_kind"
    specialism = "specialism"
    age_band = "age_band"
    intake_channel = "intake_channel"
    decline_reason = "decline_reason"


GROUPABLE = tuple(d.value for d in Dimension)
FILTERABLE = ("kind", "urgency", "beneficiary", "receiver_kind", "specialism")
MAX_CELLS = 20_000  # cells of a query's table (groupings × filtered dimensions), empty ones included


def _values(enum: type[StrEnum], *, without: Iterable[str] = ()) -> list[Any]:
    return sorted(member.value for member in enum if member.value not in set(without))


def domains(query: Query, collectivites: Sequence[str]) -> dict[str, list[Any]]:
    """Every value each dimension of the query's table can take, in the order cells are listed (None,
    shown as null, last): the table is their full cross-product. `collectivites`: those in scope."""
    months: list[Any] = []
    month = query.start
    while month < query.end:
        months.append(month.strftime("%Y-%m"))
        month = date(month.year + (month.month == 12), month.month % 12 + 1, 1)
    every: dict[str, list[Any]] = {
        "collectivite": sorted(collectivites),
        "month": months,
        "kind": _values(HandoffKind),
        "status": _values(HandoffStatus, without={"entered_in_error"}),
        "receiver_kind": _values(OrganisationKind),
        "specialism": [*sorted(SLUGS), None],
        "age_band": list(AGE_BANDS),
        "intake_channel": _values(IntakeChannel),
        "decline_reason": [*sorted(DECLINE_REASONS), None],
        "urgency": _values(Urgency),
        "beneficiary": _values(Beneficiary),
    }
    return {d: every[d] for d in _dims(query)}


def _dims(query: Query) -> list[str]:
    return [d for d in DIMENSIONS if d in query.group_by or d in query.filters]


def from_rollups(query: Query) -> bool:
    """Whether the query's table is read from the rollups, which keep what retention deleted."""
    return handoff_rollups.serves(_dims(query))


def complete_since(today: date, case_years: int) -> date:
    """The first month whose handoffs retention cannot have touched: it deletes cases closed more than
    `case_years` ago, and their handoffs came before. A table counted from the handoffs themselves (any
    table the rollups do not serve, and unmet needs) starts there, or it would count what is left of
    older months, and differ from a rollup table by the children deleted."""
    cutoff = date(today.year - case_years, today.month, 1)
    return date(cutoff.year + (cutoff.month == 12), cutoff.month % 12 + 1, 1)


def table_cells(query: Query, collectivites: int) -> int:
    """How many cells the query's table has (`collectivites`: how many are in scope)."""
    return math.prod(len(values) for values in domains(query, ["?"] * collectivites).values())


# Each count a cell publishes: its name, its aggregate, and which of the cell's handoffs it counts (for
# its perturbation key). Within a cell a handoff has one row (its specialisms are distinct).
COUNTED: tuple[tuple[str, str, str], ...] = (
    ("handoffs", "count(handoff_id)", "true"),
    ("cases", "count(DISTINCT case_id)", "true"),
    ("accepted", "count(handoff_id) FILTER (WHERE accepted_at IS NOT NULL)", "accepted_at IS NOT NULL"),
    ("declined", "count(handoff_id) FILTER (WHERE h_status = 'declined')", "h_status = 'declined'"),
    ("failed", "count(handoff_id) FILTER (WHERE h_status = 'failed')", "h_status = 'failed'"),
    (
        "overdue",
        "count(handoff_id) FILTER (WHERE overdue)",
        "overdue",
    ),
    ("runaway_cases", "count(DISTINCT case_id) FILTER (WHERE runaway)", "runaway"),
    *(
        (f"declined_{r}", f"count(handoff_id) FILTER (WHERE h_decline_reason = '{r}')", f"h_decline_reason = '{r}'")
        for r in DECLINE_REASONS
    ),
)
COUNTS = tuple(name for name, _, _ in COUNTED if name not in ("handoffs", "cases"))  # masked when small
REASONS = {"declined": [f"declined_{r}" for r in DECLINE_REASONS]}
# What the published counts of one cell must respect after their noise, outer bounds first.
BOUNDS = (
    disclosure.Bound("handoffs", ("cases",)),  # never more distinct cases than handoffs
    disclosure.Bound("cases", ("runaway_cases",)),
    disclosure.Bound("handoffs", ("accepted", "declined")),  # a declined handoff was never accepted
    disclosure.Bound("handoffs", ("declined", "failed")),  # one status each
    disclosure.Bound("handoffs", ("overdue",)),
    disclosure.Bound("declined", tuple(REASONS["declined"]), exhaustive=True),  # every decline has one reason
)
DURATIONS: tuple[tuple[str, str], ...] = (
    ("acknowledged_n", "count(acknowledged_at)"),
    ("median_hours_to_acknowledgement", "percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_hours)"),
    ("p90_hours_to_acknowledgement", "percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_hours)"),
    ("accepted_n", "count(accepted_at)"),
    ("median_hours_to_acceptance", "percentile_cont(0.5) WITHIN GROUP (ORDER BY accept_hours)"),
    ("p90_hours_to_acceptance", "percentile_cont(0.9) WITHIN GROUP (ORDER BY accept_hours)"),
)
COLUMNS = (
    *(name for name, _, _ in COUNTED),
    *(f"{name}_key" for name, _, _ in COUNTED),
    *(name for name, _ in DURATIONS),
)
# Stated with every table, JSON and CSV alike. No comma in it: each CSV note stays one unquoted field.
RULE = (
    "Handoffs of (collectivité / month / kind) atoms with fewer than k distinct cases count in no figure. "
    "Every combination of the requested dimensions is listed in a fixed order whether or not anything "
    "happened there. A cell counting fewer than k distinct cases (none at all included) is suppressed: "
    "its figures are empty and `suppressed` is true. Further cells are suppressed so that no line of the "
    "table has exactly one suppressed cell. Inside a published cell every count under k (zero included) "
    "and the rates made from it are masked the same way and durations need k handoffs. Every published "
    "count carries a noise of at most 2 that depends only on the handoffs it counts (cell-key "
    "perturbation) so that differences between queries are not exact. The counts of a cell are then "
    "adjusted by as few units as needed so that no part exceeds its whole: never more distinct cases "
    "than handoffs and declines by reason adding up to the declines when all are shown."
)
WORK_MEM = "64MB"


@dataclass(frozen=True)
class Query:
    collectivites: list[str] | None  # None: the whole country
    start: date
    end: date  # exclusive: the first day after the last month
    group_by: tuple[str, ...]
    filters: dict[str, str] = field(default_factory=dict)
    k: int = 10


# The atoms under k cases of a period and territory: their handoffs count nowhere.
_EXCLUDED = """
    SELECT collectivite_code, created_month, kind, true AS excluded
      FROM handoff
     WHERE status <> 'entered_in_error' AND created_month >= %(start)s AND created_month < %(end)s {territory}
     GROUP BY 1, 2, 3 HAVING count(DISTINCT case_id) < %(k)s"""


def _rows(query: Query, dims: Iterable[str]) -> str:
    """One row per handoff (per specialism when asked) of the atoms of k cases or more, with the
    dimensions asked for. The atom test runs on the period and territory only, never on the query's
    other filters or groupings. The case and the receiving organisation are joined only when a
    dimension needs them: a year of one collectivité is one index range scan and a hash join."""
    dims = list(dims)
    joins = []
    if {"age_band", "intake_channel", "specialism"} & set(dims):
        joins.append("JOIN case_record c ON c.id = h.case_id")
    if "receiver_kind" in dims:
        joins.append("JOIN organisation ro ON ro.id = h.receiver_organisation_id")
    if "specialism" in dims:
        joins.append(SPECIALISMS)
    territory = "AND {alias}collectivite_code = ANY(%(collectivites)s)" if query.collectivites is not None else ""
    columns = "".join(f",\n{DIMENSIONS[d]} AS {d}" for d in dims)
    return f"""
        excluded AS ({_EXCLUDED.format(territory=territory.format(alias=""))}),
        runaway AS (
            SELECT DISTINCT case_id FROM case_event e
             WHERE kind = 'runaway_started' {territory.format(alias="e.")}
        ),
        rows AS (
            SELECT h.id AS handoff_id, h.case_id, get_byte(uuid_send(h.id), 15) AS hkey,
                   h.status AS h_status, {DECLINE_REASON} AS h_decline_reason,
                   h.acknowledged_at > h.acknowledge_by
                       OR (h.acknowledged_at IS NULL AND h.acknowledge_by < %(now)s) AS overdue,
                   h.acknowledged_at, h.accepted_at,
                   date_part('epoch', h.acknowledged_at - h.created_at) / 3600 AS ack_hours,
                   date_part('epoch', h.accepted_at - h.created_at) / 3600 AS accept_hours,
                   r.case_id IS NOT NULL AS runaway
                   {columns}
              FROM handoff h LEFT JOIN excluded x USING (collectivite_code, created_month, kind)
              LEFT JOIN runaway r ON r.case_id = h.case_id
              {" ".join(joins)}
             WHERE x.excluded IS NULL AND h.status <> 'entered_in_error'
                   AND h.created_month >= %(start)s AND h.created_month < %(end)s
                   {territory.format(alias="h.")}
        )"""


async def _scan(
    conn: AsyncConnection, query: Query, dims: list[str], now: datetime, *, totals_over: list[str] | None = None
) -> list[dict[str, Any]]:
    """The non-empty cells of the table over `dims` (true values and perturbation keys); with
    `totals_over`, in the same scan, those of the table over those dimensions too (`detail` false)."""
    if totals_over is not None:
        grouping = f"GROUPING SETS (({', '.join(dims)}), ({', '.join(totals_over)}))"
        detail = f"grouping({', '.join(dims)}) = 0"
    else:
        grouping, detail = ", ".join(dims) or "()", "true"
    measures = ", ".join(
        [
            *(f"{sql} AS {name}" for name, sql, _ in COUNTED),
            *(f"coalesce(sum(hkey) FILTER (WHERE {which}), 0) AS {name}_key" for name, _, which in COUNTED),
            *(f"{sql} AS {name}" for name, sql in DURATIONS),
        ]
    )
    rows = await (
        await conn.execute(
            f"WITH {_rows(query, dims)} SELECT {detail} AS detail, {''.join(d + ', ' for d in dims)}{measures} "
            f"FROM rows GROUP BY {grouping}",
            {
                "start": query.start,
                "end": query.end,
                "k": query.k,
                "now": now,
                "collectivites": query.collectivites,
                "reasons": list(DECLINE_REASONS),
                "slugs": sorted(SLUGS),
            },
            prepare=False,  # a generic plan would serve one collectivité with the national scan
        )
    ).fetchall()
    names = ["detail", *dims, *COLUMNS]
    return _months_shown([dict(zip(names, row, strict=True)) for row in rows])


async def _scan_rollups(
    conn: AsyncConnection, query: Query, dims: list[str], now: datetime, *, totals_over: list[str] | None = None
) -> list[dict[str, Any]]:
    """What `_scan` answers, read from the rollups (for dimensions they hold: `handoff_rollups.serves`)."""
    records = await handoff_rollups.scan(
        conn,
        dims=dims,
        collectivites=query.collectivites,
        start=query.start,
        end=query.end,
        k=query.k,
        now=now,
        totals_over=totals_over,
    )
    return _months_shown([{name: record[name] for name in ("detail", *dims, *COLUMNS)} for record in records])


def _months_shown(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for record in records:
        if "month" in record:
            record["month"] = record["month"] and record["month"].strftime("%Y-%m")
    return records


async def collectivites_in_scope(conn: AsyncConnection, collectivites: list[str] | None) -> list[str]:
    """The collectivités a query covers: those named, or all of them (public reference data)."""
    if collectivites is not None:
        return collectivites
    rows = await (await conn.execute("SELECT code FROM collectivite ORDER BY code")).fetchall()
    return [row[0] for row in rows]


async def handoff_table(
    conn: AsyncConnection, query: Query, *, collectivites: Sequence[str], now: datetime
) -> dict[str, Any]:
    """Cells (protected: every cell of the table the filters select) and the total, for the query.
    `collectivites`: those in scope (`collectivites_in_scope`), the domain of a grouping by collectivité."""
    dims = _dims(query)
    filtered = [d for d in dims if d in query.filters]
    values = domains(query, collectivites)
    async with conn.transaction():
        # A national year sorts half a million rows per measure: in memory, not in temporary files.
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        if handoff_rollups.serves(dims):
            records = await _scan_rollups(conn, query, dims, now, totals_over=filtered)
            table = [record for record in records if record["detail"]]
            totals = table if dims == filtered else [record for record in records if not record["detail"]]
        elif dims == filtered:  # no grouping beyond the filters: the table is the totals' table
            table = totals = await _scan(conn, query, dims, now)
        elif "specialism" in dims and "specialism" not in filtered:
            # A handoff has a row per specialism here: its totals need rows of their own.
            table = await _scan(conn, query, dims, now)
            totals = await _scan(conn, query, filtered, now)
        else:
            records = await _scan(conn, query, dims, now, totals_over=filtered)
            table = [record for record in records if record["detail"]]
            totals = [record for record in records if not record["detail"]]
    return {
        "cells": _protected(table, dims, values, query, keys=query.group_by),
        "total": next(iter(_protected(totals, filtered, values, query, keys=())), _publish({}, query.k)),
    }


def _complete(records: list[dict[str, Any]], dims: list[str], values: dict[str, list[Any]]) -> list[dict[str, Any]]:
    """The full table over `dims`: every combination of their values, in order, empty ones as zeros."""
    found = {tuple(record[d] for d in dims): record for record in records}
    empty = dict.fromkeys(COLUMNS, 0)
    return [
        found.get(key) or {**empty, **dict(zip(dims, key, strict=True))} for key in product(*(values[d] for d in dims))
    ]


def _protected(
    records: list[dict[str, Any]], dims: list[str], values: dict[str, list[Any]], query: Query, *, keys: Iterable[str]
) -> list[dict[str, Any]]:
    """The cells of the full table over `dims` that the query's filters select, each as published."""
    table = _complete(records, dims, values)
    hidden, masked = disclosure.protect(table, dims, k=query.k, counts=COUNTS, reasons=REASONS)
    keys = list(keys)
    published = []
    for cell in table:
        if all(cell[d] == v for d, v in query.filters.items()):
            key = tuple(cell[d] for d in dims)
            published.append(_publish(cell, query.k, hidden=key in hidden, masked=masked.get(key), keys=keys))
    return published


PUBLISHED = (
    "handoffs",
    "cases",
    "accepted_rate",
    "declined_rate",
    "failed_rate",
    "declined_rate_by_reason",
    "overdue",
    "cases_with_runaway",
    "median_hours_to_acknowledgement",
    "p90_hours_to_acknowledgement",
    "median_hours_to_acceptance",
    "p90_hours_to_acceptance",
)
SALTS = {name: i for i, (name, _, _) in enumerate(COUNTED)}


def _publish(
    cell: dict[str, Any], k: int, *, hidden: bool = True, masked: set[str] | None = None, keys: Iterable[str] = ()
) -> dict[str, Any]:
    """The public form of a cell: its keys, then either its measures (perturbed and within their
    bounds; masked counts and their rates null) or nulls throughout."""
    out: dict[str, Any] = {key: cell.get(key) for key in keys}
    masked = masked or set()
    if hidden or (cell.get("cases") or 0) < k:
        return {**out, **dict.fromkeys(PUBLISHED), "masked": [], "suppressed": True}
    counts = disclosure.perturbed(
        {name: cell[name] for name in SALTS},
        {name: cell[f"{name}_key"] for name in SALTS},
        SALTS,
        masked=masked,
        bounds=BOUNDS,
    )
    handoffs = counts["handoffs"] or 1

    def rate(name: str) -> float | None:
        value = counts[name]
        return None if value is None else round(min(value, handoffs) / handoffs, 4)

    out |= {
        "handoffs": counts["handoffs"],
        "cases": counts["cases"],
        "accepted_rate": rate("accepted"),
        "declined_rate": rate("declined"),
        "failed_rate": rate("failed"),
        "declined_rate_by_reason": {r: rate(f"declined_{r}") for r in DECLINE_REASONS},
        "overdue": counts["overdue"],
        "cases_with_runaway": counts["runaway_cases"],
    }
    for what, n_name in (("acknowledgement", "acknowledged_n"), ("acceptance", "accepted_n")):
        enough = (cell.get(n_name) or 0) >= k
        for stat in ("median", "p90"):
            value = cell.get(f"{stat}_hours_to_{what}")
            out[f"{stat}_hours_to_{what}"] = round(float(value), 2) if enough and value is not None else None
    return {**out, "masked": sorted(masked), "suppressed": False}


CSV_MEASURES = tuple(m for m in PUBLISHED if m != "declined_rate_by_reason")  # reasons get a column each


def csv_notes(k: int) -> list[str]:
    """The lines a CSV starts with, before its header: k and the rule, as the JSON states them. Each
    starts with '#' and holds no comma — one cell in a spreadsheet, skipped by `comment='#'` readers."""
    return [
        f"# k = {k}",
        f"# Rule: {RULE}",
        "# Empty values are withheld under that rule. suppressed = true marks a cell withheld whole.",
    ]


def to_csv(group_by: Iterable[str], cells: list[dict[str, Any]], *, k: int) -> str:
    """The cells as CSV: the notes (k and the rule), a header row, then one row per cell; suppressed or
    masked values empty, no formula injection."""
    keys = list(group_by)
    columns = [*keys, *CSV_MEASURES, *(f"declined_rate_{r}" for r in DECLINE_REASONS), "suppressed"]
    buffer = io.StringIO()
    for note in csv_notes(k):
        buffer.write(note + "\r\n")
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(columns)
    for cell in cells:
        reasons = cell.get("declined_rate_by_reason") or {}
        values = [
            *(cell.get(k) for k in keys),
            *(cell.get(m) for m in CSV_MEASURES),
            *(reasons.get(r) for r in DECLINE_REASONS),
            "true" if cell["suppressed"] else "false",
        ]
        writer.writerow(["" if v is None else _safe(v) for v in values])
    return buffer.getvalue()


def _safe(value: Any) -> str:
    text = str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@") and not _is_number(text) else text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --- unmet needs ------------------------------------------------------------------------------------


NEEDS_RULE = (
    "Handoffs of (collectivité, month, kind) atoms under k cases count nowhere; each signal is then counted "
    "per (collectivité, month, specialism) and a month's count is left out when it concerns fewer than k "
    "distinct cases (k searches for empty searches), so no difference of two periods can reveal it. A "
    "signal with no month left is null and named in `suppressed`, whether it had small months or none; a "
    "(collectivité, specialism) row with no signal left is not listed. Handoff counts carry a noise of at "
    "most 2 that depends only on the handoffs counted."
)
SIGNALS = ("empty_searches", "declined_no_capacity", "declined_out_of_territory", "expired")
NEED_SALTS = {signal: 100 + i for i, signal in enumerate(SIGNALS)}


async def needs(
    conn: AsyncConnection, *, collectivites: list[str] | None, start: date, end: date, k: int
) -> list[dict[str, Any]]:
    """Per collectivité and specialism: searches that found nothing, handoffs declined for lack of
    capacity or out of territory, handoffs expired — each summed over its month atoms of at least k.

    Here groups under k are left out entirely rather than listed: a signal with no atom of k is null
    (and named in `suppressed`) whether it had small atoms or none at all, and a row whose signals are
    all null is not listed, so the rows, their order and every figure depend only on atoms of k or
    more. There is no total to difference. (Listing every (collectivité, specialism) would do too, but
    tells a reader nothing more: the rows left out are exactly those with nothing to say.)"""
    territory = "AND {alias}collectivite_code = ANY(%(collectivites)s)" if collectivites is not None else ""
    rows = await (
        await conn.execute(
            f"""
        WITH excluded AS ({_EXCLUDED.format(territory=territory.format(alias=""))}),
        signal AS (
            SELECT h.collectivite_code, h.created_month AS month, sp.specialism, h.case_id,
                   get_byte(uuid_send(h.id), 15) AS hkey,
                   CASE WHEN h.status = 'expired' THEN 'expired' ELSE 'declined_' || h.decline_reason END AS signal
              FROM handoff h LEFT JOIN excluded x USING (collectivite_code, created_month, kind)
              JOIN case_record c ON c.id = h.case_id
              {SPECIALISMS}
             WHERE x.excluded IS NULL
               AND (h.status = 'expired'
                    OR (h.status = 'declined' AND h.decline_reason IN ('no_capacity', 'out_of_territory')))
               AND h.created_month >= %(start)s AND h.created_month < %(end)s {territory.format(alias="h.")}
        ), atom AS (
            SELECT collectivite_code, month, specialism, signal, count(*) AS n, count(DISTINCT case_id) AS cases,
                   sum(hkey) AS key
              FROM signal GROUP BY 1, 2, 3, 4
             UNION ALL
            SELECT collectivite_code, month, specialism, 'empty_searches', sum(searches), sum(searches), NULL
              FROM empty_search WHERE month >= %(start)s AND month < %(end)s {territory.format(alias="")}
             GROUP BY 1, 2, 3
        )
        SELECT collectivite_code, nullif(specialism, ''), signal, sum(n)::int, sum(key)::bigint
          FROM atom WHERE cases >= %(k)s
         GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS FIRST, 3""",
            {"start": start, "end": end, "collectivites": collectivites, "k": k, "slugs": sorted(SLUGS)},
        )
    ).fetchall()
    cells: dict[tuple[str, str | None], dict[str, Any]] = {}
    for collectivite, specialism, signal, kept, key in rows:
        cell = cells.setdefault(
            (collectivite, specialism),
            {"collectivite": collectivite, "specialism": specialism, **dict.fromkeys(SIGNALS)},
        )
        # Searches are not children: only handoff counts are perturbed.
        cell[signal] = kept if key is None else disclosure.perturb(kept, key, NEED_SALTS[signal])
    for cell in cells.values():
        cell["suppressed"] = [signal for signal in SIGNALS if cell[signal] is None]
    return list(cells.values())


async def record_empty_search(
    conn: AsyncConnection, *, lon: float, lat: float, specialisms: Iterable[str], now: datetime
) -> None:
    """Count a search that found nothing against its commune (the point itself is never kept)."""
    names = list(specialisms) or [""]
    await conn.execute(
        """INSERT INTO empty_search (month, commune_code, specialism, collectivite_code, searches)
           SELECT date_trunc('month', %(now)s AT TIME ZONE 'Europe/Paris')::date, c.code, sp, c.collectivite_code, 1
             FROM (SELECT code, collectivite_code FROM commune
                    WHERE ST_Covers(boundary, ST_SetSRID(ST_MakePoint(%(lon)s::float8, %(lat)s::float8), 4326))
                    ORDER BY code LIMIT 1) c, unnest(%(names)s::text[]) sp
           ON CONFLICT (month, commune_code, specialism) DO UPDATE SET searches = empty_search.searches + 1""",
        {"now": now, "lon": lon, "lat": lat, "names": names},
    )


# --- coverage -------------------------------------------------------------------------------------


async def coverage(
    conn: AsyncConnection,
    *,
    collectivites: list[str] | None,
    specialisms: list[str],
    within_km: float,
    min_population: int,
    with_geometry: bool,
) -> dict[str, Any]:
    """Share of each collectivité's population living within `within_km` (on the sphere, from the
    mairie point) of an active, non-demo service of each specialism; and the uncovered communes.
    Read from the precomputed distances of directory/coverage.py."""
    territory = "AND c.collectivite_code = ANY(%(collectivites)s)" if collectivites is not None else ""
    live = coverage_table.LIVE_PROBE.format(specialism="sp.specialism")
    rows = await (
        await conn.execute(
            f"""
        WITH covered AS (
            SELECT c.code, c.name, c.collectivite_code, coalesce(c.population, 0) AS population, sp.specialism,
                   CASE WHEN cc.commune_code IS NULL THEN {live}
                        ELSE coalesce(cc.metres <= %(metres)s, false) END AS covered
              FROM commune c CROSS JOIN unnest(%(specialisms)s::text[]) sp(specialism)
              LEFT JOIN commune_coverage cc ON cc.specialism = sp.specialism AND cc.commune_code = c.code
             WHERE c.point IS NOT NULL {territory}
        )
        SELECT collectivite_code, specialism, sum(population)::bigint,
               sum(population) FILTER (WHERE covered)::bigint,
               coalesce(json_agg(json_build_object('code', code, 'name', name, 'population', population)
                                 ORDER BY population DESC, code)
                        FILTER (WHERE NOT covered AND population >= %(min_population)s), '[]')::text
          FROM covered GROUP BY 1, 2 ORDER BY 1, 2""",
            {
                "collectivites": collectivites,
                "specialisms": specialisms,
                "metres": within_km * 1000,
                "min_population": min_population,
            },
        )
    ).fetchall()
    items = [
        {
            "collectivite": r[0],
            "specialism": r[1],
            "population": int(r[2] or 0),
            "covered_population": int(r[3] or 0),
            "covered_share": round((r[3] or 0) / r[2], 4) if r[2] else None,
            "uncovered_communes": json.loads(r[4]),
        }
        for r in rows
    ]
    result: dict[str, Any] = {"within_km": within_km, "min_population": min_population, "items": items}
    if with_geometry:
        codes = sorted({c["code"] for item in items for c in item["uncovered_communes"]})
        geo = await (
            await conn.execute(
                """SELECT coalesce(json_agg(json_build_object('type', 'Feature', 'id', code,
                          'geometry', ST_AsGeoJSON(
                              ST_ReducePrecision(ST_SimplifyPreserveTopology(boundary, 0.001), 1e-5), 5)::json,
                          'properties', json_build_object('name', name, 'population', population)) ORDER BY code),
                          '[]')::text
                 FROM commune WHERE code = ANY(%(codes)s)""",
                {"codes": codes},
            )
        ).fetchone()
        result["uncovered"] = {"type": "FeatureCollection", "features": json.loads(geo[0] if geo else "[]")}
    return result


class EmptySearch(SQLModel, table=True):
    """Searches that found nothing, counted per month, commune and specialism — never the point searched:
    an unmet-need signal for départements."""

    __tablename__ = "empty_search"

    month: date = Field(primary_key=True)
    commune_code: str = Field(primary_key=True, foreign_key="commune.code", max_length=5)
    specialism: str = Field(primary_key=True, max_length=64)  # "" when the search named none
    collectivite_code: str = Field(foreign_key="collectivite.code", max_length=4, index=True)
    searches: int
