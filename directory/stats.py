"""Referral statistics for départements, private by design.

These figures concern very few children per territory, so small counts could identify a child. The
protection has three layers, all applied before anything leaves the database's hands:

1. Atoms. Handoffs are grouped into atoms — (collectivité, month, kind) — and an atom with fewer than k
   distinct cases is left out of every figure, cells and totals alike, whatever the query. Its data
   never influences an output, so no combination of periods, territories or kinds can recover it.
2. Cells. A query's table is computed over its groupings and its filtered dimensions; a cell with
   fewer than k distinct cases is suppressed (primary), and along every line of the table (cells that
   differ in one dimension only) a lone suppressed cell takes the smallest published cell with it
   (complementary), so a suppressed cell cannot be recovered from its line's total. Filters select
   from that table after suppression, so a filtered query cannot be differenced against an unfiltered one.
3. Measures. Inside a published cell, any count between 1 and k-1 (declines for one reason, runaways,
   overdue handoffs…) is masked with its rate, and durations need at least k handoffs.

`entered_in_error` handoffs are excluded. Months are Paris months.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import Any

from psycopg import AsyncConnection

DECLINE_REASONS = ("no_capacity", "out_of_criteria", "out_of_territory", "refused_by_young_person", "other")
AGE_BAND = """CASE WHEN c.age < 10 THEN '0-9' WHEN c.age <= 12 THEN '10-12' WHEN c.age <= 15 THEN '13-15'
                   WHEN c.age <= 17 THEN '16-17' ELSE '18+' END"""
# Dimension → its SQL over the base rows (aliases h: handoff, c: case, ro: receiving organisation).
DIMENSIONS = {
    "collectivite": "h.collectivite_code",
    "month": "h.created_month",  # a date: shown as YYYY-MM
    "kind": "h.kind",
    "status": "h.status",
    "receiver_kind": "ro.kind",
    "specialism": "nullif(sp.specialism, '')",
    "age_band": AGE_BAND,
    "intake_channel": "c.intake_channel",
    "decline_reason": "h.decline_reason",
    "urgency": "h.urgency",
    "beneficiary": "h.beneficiary",
}
# A handoff's specialisms: those of the service it went to, or the case's needs when it named none, or
# '' (shown as null) when neither says, so that no handoff drops out of a grouping by specialism.
SPECIALISMS = """CROSS JOIN LATERAL (SELECT DISTINCT specialism FROM unnest(coalesce(nullif(coalesce(
                     (SELECT sv.specialisms FROM service sv WHERE sv.id = h.receiver_service_id), c.needs),
                     '{}'), '{""}')) AS u(specialism)) AS sp"""
GROUPABLE = (
    "collectivite",
    "month",
    "kind",
    "status",
    "receiver_kind",
    "specialism",
    "age_band",
    "intake_channel",
    "decline_reason",
)
FILTERABLE = ("kind", "urgency", "beneficiary", "receiver_kind", "specialism")
COUNTS = (
    "accepted",
    "declined",
    "failed",
    "overdue",
    "runaway_cases",
    *(f"declined_{reason}" for reason in DECLINE_REASONS),
)
RULE = (
    "A cell counting fewer than k distinct cases is suppressed, with complementary suppression along every "
    "line of the table; (collectivité, month, kind) atoms with fewer than k cases are left out of every figure; "
    "within published cells, counts between 1 and k-1 and the rates made from them are masked, and durations "
    "need k handoffs."
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


# Each measure: its name and its SQL over the rows of a cell. Within a cell a handoff has one row (its
# specialisms are distinct), so handoffs need no DISTINCT; cases do.
MEASURES: tuple[tuple[str, str], ...] = (
    ("handoffs", "count(handoff_id)"),
    ("cases", "count(DISTINCT case_id)"),
    ("accepted", "count(handoff_id) FILTER (WHERE accepted_at IS NOT NULL)"),
    ("declined", "count(handoff_id) FILTER (WHERE h_status = 'declined')"),
    ("failed", "count(handoff_id) FILTER (WHERE h_status = 'failed')"),
    (
        "overdue",
        "count(handoff_id) FILTER (WHERE acknowledged_at > acknowledge_by "
        "OR (acknowledged_at IS NULL AND acknowledge_by < %(now)s))",
    ),
    ("runaway_cases", "count(DISTINCT case_id) FILTER (WHERE runaway)"),
    *((f"declined_{r}", f"count(handoff_id) FILTER (WHERE h_decline_reason = '{r}')") for r in DECLINE_REASONS),
    ("acknowledged_n", "count(acknowledged_at)"),
    ("median_hours_to_acknowledgement", "percentile_cont(0.5) WITHIN GROUP (ORDER BY ack_hours)"),
    ("p90_hours_to_acknowledgement", "percentile_cont(0.9) WITHIN GROUP (ORDER BY ack_hours)"),
    ("accepted_n", "count(accepted_at)"),
    ("median_hours_to_acceptance", "percentile_cont(0.5) WITHIN GROUP (ORDER BY accept_hours)"),
    ("p90_hours_to_acceptance", "percentile_cont(0.9) WITHIN GROUP (ORDER BY accept_hours)"),
)


def _rows(query: Query, dims: Iterable[str]) -> str:
    """One row per handoff (per specialism when asked), with the dimensions asked for. Rows of atoms
    under k keep their dimensions, so their cells show as suppressed, but every measure column is null
    for them, so they count nowhere. The atom test runs on the period and territory only, never on the
    query's other filters or groupings. The case and the receiving organisation are joined only when a
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
        excluded AS (
            SELECT collectivite_code, created_month, kind, true AS excluded
              FROM handoff
             WHERE status <> 'entered_in_error' AND created_month >= %(start)s AND created_month < %(end)s
                   {territory.format(alias="")}
             GROUP BY 1, 2, 3 HAVING count(DISTINCT case_id) < %(k)s
        ),
        runaway AS (
            SELECT DISTINCT case_id FROM case_event e
             WHERE kind = 'runaway_started' {territory.format(alias="e.")}
        ),
        rows AS (
            SELECT CASE WHEN x.excluded IS NULL THEN h.id END AS handoff_id,
                   CASE WHEN x.excluded IS NULL THEN h.case_id END AS case_id,
                   h.status AS h_status, h.decline_reason AS h_decline_reason, h.acknowledge_by,
                   CASE WHEN x.excluded IS NULL THEN h.acknowledged_at END AS acknowledged_at,
                   CASE WHEN x.excluded IS NULL THEN h.accepted_at END AS accepted_at,
                   CASE WHEN x.excluded IS NULL THEN date_part('epoch', h.acknowledged_at - h.created_at) / 3600 END
                       AS ack_hours,
                   CASE WHEN x.excluded IS NULL THEN date_part('epoch', h.accepted_at - h.created_at) / 3600 END
                       AS accept_hours,
                   x.excluded IS NULL AND r.case_id IS NOT NULL AS runaway
                   {columns}
              FROM handoff h LEFT JOIN excluded x USING (collectivite_code, created_month, kind)
              LEFT JOIN runaway r ON r.case_id = h.case_id
              {" ".join(joins)}
             WHERE h.status <> 'entered_in_error' AND h.created_month >= %(start)s AND h.created_month < %(end)s
                   {territory.format(alias="h.")}
        )"""


def _params(query: Query, now: datetime) -> dict[str, Any]:
    return {
        "start": query.start,
        "end": query.end,
        "k": query.k,
        "now": now,
        "collectivites": query.collectivites,
        **{f"filter_{d}": v for d, v in query.filters.items()},
    }


async def handoff_table(conn: AsyncConnection, query: Query, *, now: datetime) -> dict[str, Any]:
    """Cells (with suppression applied) and the total, for the query, in one scan: the full table over
    the groupings and the filtered dimensions, and the totals over the filtered dimensions alone."""
    dims = list(dict.fromkeys([*query.group_by, *query.filters]))  # filters are grouped too, then selected
    filtered = [d for d in dims if d in query.filters]
    if query.group_by:
        grouping = f"GROUPING SETS (({', '.join(dims)}), ({', '.join(filtered)}))"
        detail = f"grouping({', '.join(dims)}) = 0"
    else:  # the table is the slice's single cell: it is its own total
        grouping, detail = ", ".join(dims) or "()", "true"
    measures = ", ".join(f"{sql} AS {name}" for name, sql in MEASURES)
    async with conn.transaction():
        # A national year sorts half a million rows per measure: in memory, not in temporary files.
        await conn.execute(f"SET LOCAL work_mem = '{WORK_MEM}'")
        rows = await (
            await conn.execute(
                f"WITH {_rows(query, dims)} SELECT {detail} AS detail, {''.join(d + ', ' for d in dims)}{measures} "
                f"FROM rows GROUP BY {grouping} ORDER BY {', '.join([*dims, 'detail']) if dims else '1'}",
                _params(query, now),
                prepare=False,  # a generic plan would serve one collectivité with the national scan
            )
        ).fetchall()
    names = ["detail", *dims, *(name for name, _ in MEASURES)]
    records = [dict(zip(names, row, strict=True)) for row in rows]
    if "month" in dims:
        for record in records:
            record["month"] = record["month"] and record["month"].strftime("%Y-%m")
    table = [record for record in records if record["detail"]]
    hidden, masked = protect(table, dims, k=query.k)

    def key(cell: dict[str, Any]) -> tuple[Any, ...]:
        return tuple(cell[d] for d in dims)

    def in_slice(cell: dict[str, Any]) -> bool:
        return all(cell[d] == v for d, v in query.filters.items())

    cells = [
        _publish(cell, k=query.k, hidden=key(cell) in hidden, masked=masked[key(cell)], keys=query.group_by)
        for cell in table
        if in_slice(cell)
    ]
    if not query.group_by:
        return {"cells": cells, "total": cells[0] if cells else _publish({}, k=query.k, hidden=True, masked=set())}
    total = next((r for r in records if not r["detail"] and in_slice(r)), {})
    small = {name for name in COUNTS if 0 < (total.get(name) or 0) < query.k}
    return {
        "cells": cells,
        "total": _publish(total, k=query.k, hidden=(total.get("cases") or 0) < query.k, masked=small),
    }


def protect(
    table: list[dict[str, Any]], dims: list[str], *, k: int
) -> tuple[set[tuple[Any, ...]], defaultdict[tuple[Any, ...], set[str]]]:
    """The cells to suppress, and per published cell the counts to mask.

    Cells: under k cases (primary), then complementary suppression along every line of the table. Counts
    inside published cells (accepted, declined by reason, overdue…): between 1 and k-1 are masked, with
    the same complementary masking along the lines, so that no masked count is the difference of a line's
    total and its published counts. Cells made only of excluded atoms (no cases) count nothing, hide
    nothing and take no part in the lines."""
    present = {tuple(c[d] for d in dims): c for c in table if c["cases"]}
    cases = {key: cell["cases"] for key, cell in present.items()}
    hidden = _complete({key for key, n in cases.items() if n < k}, cases, len(dims))
    masked: defaultdict[tuple[Any, ...], set[str]] = defaultdict(set)
    for name in COUNTS:
        values = {key: cell[name] for key, cell in present.items()}
        small = {key for key, n in values.items() if 0 < n < k}
        for key in _complete(small | hidden, values, len(dims)) - hidden:
            masked[key].add(name)
    return hidden, masked


def _complete(hidden: set[tuple[Any, ...]], values: dict[tuple[Any, ...], int], axes: int) -> set[tuple[Any, ...]]:
    """Complementary suppression: along every line of the table (cells that differ in one dimension), a
    lone hidden value takes the smallest published one with it, until no line has exactly one.
    Deterministic, so the same table always hides the same values."""
    hidden = set(hidden)
    changed = True
    while changed:
        changed = False
        for axis in range(axes):
            lines: defaultdict[tuple[Any, ...], list[tuple[Any, ...]]] = defaultdict(list)
            for key in values:
                lines[key[:axis] + key[axis + 1 :]].append(key)
            for members in lines.values():
                if len(members) > 1 and sum(key in hidden for key in members) == 1:
                    hidden.add(
                        min((key for key in members if key not in hidden), key=lambda key: (values[key], repr(key)))
                    )
                    changed = True
    return hidden


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


def _publish(
    cell: dict[str, Any], *, k: int, hidden: bool, masked: set[str], keys: Iterable[str] = ()
) -> dict[str, Any]:
    """The public form of a cell: its keys, then either its measures (masked counts and their rates null)
    or nulls throughout."""
    out: dict[str, Any] = {key: cell.get(key) for key in keys}
    if hidden or not cell.get("cases"):
        return {**out, **dict.fromkeys(PUBLISHED), "masked": [], "suppressed": True}
    handoffs = int(cell["handoffs"])

    def count(name: str) -> int | None:
        return None if name in masked else int(cell[name])

    def rate(name: str) -> float | None:
        value = count(name)
        return None if value is None else round(value / handoffs, 4)

    out |= {
        "handoffs": handoffs,
        "cases": int(cell["cases"]),
        "accepted_rate": rate("accepted"),
        "declined_rate": rate("declined"),
        "failed_rate": rate("failed"),
        "declined_rate_by_reason": {r: rate(f"declined_{r}") for r in DECLINE_REASONS},
        "overdue": count("overdue"),
        "cases_with_runaway": count("runaway_cases"),
    }
    for what, n_name in (("acknowledgement", "acknowledged_n"), ("acceptance", "accepted_n")):
        enough = (cell.get(n_name) or 0) >= k
        for stat in ("median", "p90"):
            value = cell.get(f"{stat}_hours_to_{what}")
            out[f"{stat}_hours_to_{what}"] = round(float(value), 2) if enough and value is not None else None
    return {**out, "masked": sorted(masked), "suppressed": False}


CSV_MEASURES = tuple(m for m in PUBLISHED if m != "declined_rate_by_reason")  # reasons get a column each


def to_csv(group_by: Iterable[str], cells: list[dict[str, Any]]) -> str:
    """The cells as CSV: header row, suppressed or masked values empty, no formula injection."""
    keys = list(group_by)
    columns = [*keys, *CSV_MEASURES, *(f"declined_rate_{r}" for r in DECLINE_REASONS), "suppressed"]
    buffer = io.StringIO()
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
    "Each signal is counted per (collectivité, month, specialism) atom; an atom's count is left out when it "
    "concerns fewer than k distinct cases (k searches for empty searches), so no difference of two periods "
    "can reveal it. `suppressed` names the signals with such a part left out; null when nothing is left."
)
SIGNALS = ("empty_searches", "declined_no_capacity", "declined_out_of_territory", "expired")


async def needs(
    conn: AsyncConnection, *, collectivites: list[str] | None, start: date, end: date, k: int
) -> list[dict[str, Any]]:
    """Per collectivité and specialism: searches that found nothing, handoffs declined for lack of
    capacity or out of territory, handoffs expired — each summed over its month atoms of at least k."""
    territory = "AND collectivite_code = ANY(%(collectivites)s)" if collectivites is not None else ""
    handoff_territory = territory.replace("collectivite_code", "h.collectivite_code")
    rows = await (
        await conn.execute(
            f"""
        WITH signal AS (
            SELECT h.collectivite_code, h.created_month AS month,
                   sp.specialism, h.case_id,
                   CASE WHEN h.status = 'expired' THEN 'expired'
                        ELSE 'declined_' || h.decline_reason END AS signal
              FROM handoff h JOIN case_record c ON c.id = h.case_id
              {SPECIALISMS}
             WHERE (h.status = 'expired'
                    OR (h.status = 'declined' AND h.decline_reason IN ('no_capacity', 'out_of_territory')))
               AND h.created_month >= %(start)s AND h.created_month < %(end)s {handoff_territory}
        ), atom AS (
            SELECT collectivite_code, month, specialism, signal, count(*) AS n, count(DISTINCT case_id) AS cases
              FROM signal GROUP BY 1, 2, 3, 4
             UNION ALL
            SELECT collectivite_code, month, specialism, 'empty_searches', sum(searches), sum(searches)
              FROM empty_search WHERE month >= %(start)s AND month < %(end)s {territory} GROUP BY 1, 2, 3
        )
        SELECT collectivite_code, nullif(specialism, ''), signal,
               sum(n) FILTER (WHERE cases >= %(k)s)::int, bool_or(cases < %(k)s)
          FROM atom GROUP BY 1, 2, 3 ORDER BY 1, 2 NULLS FIRST, 3""",
            {"start": start, "end": end, "collectivites": collectivites, "k": k},
        )
    ).fetchall()
    cells: dict[tuple[str, str | None], dict[str, Any]] = {}
    for collectivite, specialism, signal, kept, withheld in rows:
        cell = cells.setdefault(
            (collectivite, specialism),
            {"collectivite": collectivite, "specialism": specialism, **dict.fromkeys(SIGNALS, 0), "suppressed": []},
        )
        cell[signal] = kept
        if withheld:
            cell["suppressed"].append(signal)
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
    """Share of each collectivité's population living within `within_km` (spheroid distance from the
    mairie point) of an active, non-demo service of each specialism; and the uncovered communes."""
    territory = "AND c.collectivite_code = ANY(%(collectivites)s)" if collectivites is not None else ""
    rows = await (
        await conn.execute(
            f"""
        WITH covered AS (
            SELECT c.code, c.name, c.collectivite_code, coalesce(c.population, 0) AS population, sp.specialism,
                   EXISTS (SELECT 1 FROM service s JOIN location l ON l.id = s.location_id
                            WHERE s.specialisms @> ARRAY[sp.specialism]::varchar[] AND s.archived_at IS NULL
                              AND s.status <> 'suspended' AND NOT s.demo AND l.archived_at IS NULL
                              AND ST_DWithin(l.public_point::geography, c.point::geography, %(metres)s)) AS covered
              FROM commune c CROSS JOIN unnest(%(specialisms)s::text[]) sp(specialism)
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
                          'geometry', ST_AsGeoJSON(ST_SimplifyPreserveTopology(boundary, 0.001), 5)::json,
                          'properties', json_build_object('name', name, 'population', population)) ORDER BY code),
                          '[]')::text
                 FROM commune WHERE code = ANY(%(codes)s)""",
                {"codes": codes},
            )
        ).fetchone()
        result["uncovered"] = {"type": "FeatureCollection", "features": json.loads(geo[0] if geo else "[]")}
    return result
