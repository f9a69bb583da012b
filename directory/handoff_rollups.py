"""Handoff rollups: the statistics' atoms summed ahead (see the migration 2026-12-03_1400_handoff_rollups
for what a row holds and how triggers keep it). This module declares the tables, reads a table of
statistics from them, and rebuilds them.

A table whose dimensions are among collectivité, month and kind — the départements' dashboards and
every national view — is read from here, exactly as directory/stats.py would count it from the
handoffs, and with the months retention has emptied still counted. A table grouped or filtered by
anything else (status, receiving organisation's kind, specialism, age band, intake channel, decline
reason, urgency, beneficiary) needs each handoff, and is counted from the handoffs that retention has
kept.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg import AsyncConnection
from sqlalchemy.dialects.postgresql import ARRAY
from sqlmodel import Field, SQLModel

# The dimensions a rollup row has, as its columns.
DIMENSIONS = {"collectivite": "collectivite_code", "month": "month", "kind": "kind"}
# Additive counts, with the name directory/stats.py publishes them under.
ADDITIVE = {
    "handoffs": "handoffs",
    "accepted": "accepted",
    "declined": "declined",
    "failed": "failed",
    **{
        f"declined_{r}": f"declined_{r}"
        for r in ("no_capacity", "out_of_criteria", "out_of_territory", "refused_by_young_person", "other")
    },
}


def _counted(name: str) -> Any:
    return Field(sa_column=sa.Column(name, sa.Integer, nullable=False))


def _key(name: str) -> Any:
    return Field(sa_column=sa.Column(name, sa.BigInteger, nullable=False))


def _array(name: str, item: Any) -> Any:
    return Field(sa_column=sa.Column(name, ARRAY(item), nullable=False))


class HandoffRollup(SQLModel, table=True):
    """One atom's figures (`archived`: the part retention deleted)."""

    __tablename__ = "handoff_rollup"
    __table_args__ = (sa.Index("ix_handoff_rollup__month", "month"),)

    collectivite_code: str = Field(primary_key=True, foreign_key="collectivite.code", max_length=4)
    month: date = Field(primary_key=True)
    kind: str = Field(primary_key=True, max_length=32)
    archived: bool = Field(primary_key=True)
    handoffs: int = _counted("handoffs")
    handoffs_key: int = _key("handoffs_key")
    case_nos: list[int] = _array("case_nos", sa.Integer)
    case_keys: list[int] = _array("case_keys", sa.Integer)
    accepted: int = _counted("accepted")
    accepted_key: int = _key("accepted_key")
    declined: int = _counted("declined")
    declined_key: int = _key("declined_key")
    failed: int = _counted("failed")
    failed_key: int = _key("failed_key")
    declined_no_capacity: int = _counted("declined_no_capacity")
    declined_no_capacity_key: int = _key("declined_no_capacity_key")
    declined_out_of_criteria: int = _counted("declined_out_of_criteria")
    declined_out_of_criteria_key: int = _key("declined_out_of_criteria_key")
    declined_out_of_territory: int = _counted("declined_out_of_territory")
    declined_out_of_territory_key: int = _key("declined_out_of_territory_key")
    declined_refused_by_young_person: int = _counted("declined_refused_by_young_person")
    declined_refused_by_young_person_key: int = _key("declined_refused_by_young_person_key")
    declined_other: int = _counted("declined_other")
    declined_other_key: int = _key("declined_other_key")
    overdue_late: int = _counted("overdue_late")
    overdue_late_key: int = _key("overdue_late_key")
    pending_due: list[datetime] = _array("pending_due", sa.DateTime(timezone=True))
    pending_keys: list[int] = _array("pending_keys", sa.Integer)
    ack_hours: list[float] = _array("ack_hours", sa.Float)
    accept_hours: list[float] = _array("accept_hours", sa.Float)


class RunawayCase(SQLModel, table=True):
    """A case that ran away, by its number, and the collectivité its events are in (kept by a trigger on
    case_event; retention deletes the events and renumbers these rows as it does the rollups')."""

    __tablename__ = "runaway_case"

    stat_no: int = Field(primary_key=True)
    collectivite_code: str = Field(primary_key=True, max_length=4, index=True)


def serves(dims: list[str]) -> bool:
    """Whether a table over these dimensions can be read from the rollups."""
    return set(dims) <= set(DIMENSIONS)


def statement(dims: list[str], *, territorial: bool, totals_over: list[str] | None = None) -> str:
    """The cells over `dims` (true values and perturbation keys, named as directory/stats.py names
    them), for the period and territory in the parameters, from the atoms of at least k cases; with
    `totals_over` (some of `dims`), in the same pass, those over these dimensions too (`detail` false).

    A case leaves retention whole, so its number is in one part (live or archived) of an atom: an
    atom's distinct cases are the sum of its parts'. Across atoms they are counted distinct."""
    columns = [DIMENSIONS[d] for d in dims]
    if totals_over is not None and totals_over != dims:
        totals = ", ".join(DIMENSIONS[d] for d in totals_over)
        group = f"GROUP BY GROUPING SETS (({', '.join(columns)}), ({totals}))"
        detail = f"grouping({', '.join(columns)}) = 0"
    else:
        group = f"GROUP BY {', '.join(columns)}" if dims else ""
        detail = "true"
    select_keys = f"{detail} AS detail, " + "".join(f"{DIMENSIONS[d]} AS {d}, " for d in dims)
    join = "ON s.detail = {other}.detail" + "".join(f" AND s.{d} IS NOT DISTINCT FROM {{other}}.{d}" for d in dims)
    territory = "AND {alias}collectivite_code = ANY(%(collectivites)s)" if territorial else ""
    sums = ", ".join(
        f"sum({column})::bigint AS {name}, sum({column}_key)::bigint AS {name}_key" for name, column in ADDITIVE.items()
    )
    measures = ", ".join(
        [
            *(f"coalesce(s.{name}, 0) AS {name}" for name in ("handoffs",)),
            "coalesce(c.cases, 0) AS cases",
            *(f"coalesce(s.{name}, 0) AS {name}" for name in ("accepted", "declined", "failed")),
            "coalesce(s.overdue, 0) AS overdue",
            "coalesce(c.runaway_cases, 0) AS runaway_cases",
            *(f"coalesce(s.{name}, 0) AS {name}" for name in ADDITIVE if name.startswith("declined_")),
            "coalesce(s.handoffs_key, 0) AS handoffs_key",
            "coalesce(s.handoffs_key, 0) AS cases_key",
            *(f"coalesce(s.{name}_key, 0) AS {name}_key" for name in ("accepted", "declined", "failed")),
            "coalesce(s.overdue_key, 0) AS overdue_key",
            "coalesce(c.runaway_key, 0) AS runaway_cases_key",
            *(f"coalesce(s.{name}_key, 0) AS {name}_key" for name in ADDITIVE if name.startswith("declined_")),
            "coalesce(a.n, 0) AS acknowledged_n",
            "a.median AS median_hours_to_acknowledgement",
            "a.p90 AS p90_hours_to_acknowledgement",
            "coalesce(p.n, 0) AS accepted_n",
            "p.median AS median_hours_to_acceptance",
            "p.p90 AS p90_hours_to_acceptance",
        ]
    )
    key_columns = "".join(f"s.{d}, " for d in dims)

    def hours(column: str) -> str:
        return f"""SELECT {select_keys}count(*) AS n,
                   percentile_cont(0.5) WITHIN GROUP (ORDER BY x) AS median,
                   percentile_cont(0.9) WITHIN GROUP (ORDER BY x) AS p90
              FROM kept CROSS JOIN LATERAL unnest(kept.{column}) AS x {group}"""

    return f"""
        WITH kept AS MATERIALIZED (
            SELECT * FROM (
                SELECT r.*, sum(cardinality(r.case_nos)) OVER (PARTITION BY collectivite_code, month, kind) AS cases
                  FROM handoff_rollup r
                 WHERE r.month >= %(start)s AND r.month < %(end)s {territory.format(alias="r.")}
            ) parts WHERE cases >= %(k)s
        ), runaway AS (
            SELECT DISTINCT stat_no FROM runaway_case WHERE true {territory.format(alias="")}
        ), s AS (
            SELECT {select_keys}{sums},
                   sum(overdue_late + late.n)::bigint AS overdue,
                   sum(overdue_late_key + late.key)::bigint AS overdue_key
              FROM kept CROSS JOIN LATERAL (
                   SELECT count(*) AS n, coalesce(sum(u.key), 0) AS key
                     FROM unnest(kept.pending_due, kept.pending_keys) AS u(due, key) WHERE u.due < %(now)s) late
             {group}
        ), c AS (
            SELECT {select_keys}count(DISTINCT u.n) AS cases,
                   count(DISTINCT u.n) FILTER (WHERE rw.stat_no IS NOT NULL) AS runaway_cases,
                   coalesce(sum(u.key) FILTER (WHERE rw.stat_no IS NOT NULL), 0) AS runaway_key
              FROM kept CROSS JOIN LATERAL unnest(kept.case_nos, kept.case_keys) AS u(n, key)
              LEFT JOIN runaway rw ON rw.stat_no = u.n
             {group}
        ), a AS ({hours("ack_hours")}),
        p AS ({hours("accept_hours")})
        SELECT s.detail, {key_columns}{measures}
          FROM s LEFT JOIN c {join.format(other="c")} LEFT JOIN a {join.format(other="a")}
               LEFT JOIN p {join.format(other="p")}"""


async def scan(
    conn: AsyncConnection,
    *,
    dims: list[str],
    collectivites: list[str] | None,
    start: date,
    end: date,
    k: int,
    now: datetime,
    totals_over: list[str] | None = None,
) -> list[dict[str, Any]]:
    """The cells of `statement`, each as a dict by column name, after the atoms this transaction wrote
    (if any) are recomputed: they are otherwise recomputed at commit."""
    await conn.execute("SELECT handoff_rollup_flush()")
    cursor = await conn.execute(
        statement(dims, territorial=collectivites is not None, totals_over=totals_over),
        {"start": start, "end": end, "k": k, "now": now, "collectivites": collectivites},
        prepare=False,  # one collectivité and the whole country want different plans
    )
    names = [column.name for column in cursor.description or ()]
    return [dict(zip(names, row, strict=True)) for row in await cursor.fetchall()]


def rebuild(conn: psycopg.Connection) -> int:
    """Recompute every live row from the handoffs, as the schema owner; returns the rows written."""
    with conn.transaction():
        row = conn.execute("SELECT handoff_rollup_rebuild()").fetchone()
    return int(row[0]) if row else 0
