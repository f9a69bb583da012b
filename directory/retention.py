"""Retention (CNIL): closed cases go after N years with their handoffs and events, keeping only their
part of the statistics' monthly rollups; audit rows go after their own period. Runs as the schema
owner: the application's role cannot delete anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import psycopg

IDEMPOTENCY_KEYS_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class RetentionReport:
    cases: int
    handoffs: int
    audit_rows: int


def apply(conn: psycopg.Connection, *, now: datetime, case_years: int, audit_days: int) -> RetentionReport:
    cutoff = now.replace(year=now.year - case_years)
    with conn.transaction():
        # The expired cases, locked: one reopened meanwhile would otherwise be archived and kept.
        row = conn.execute(
            """SELECT coalesce(array_agg(id), '{}') FROM (
                   SELECT id FROM case_record WHERE status = 'closed' AND closed_at < %(cutoff)s FOR UPDATE) expired""",
            {"cutoff": cutoff},
        ).fetchone()
        expired = {"cases": row[0] if row else []}
        # Their handoffs locked too, before the statistics' atoms are: a partner moving one of them
        # meanwhile is waited for, never deadlocked with.
        conn.execute("SELECT id FROM handoff WHERE case_id = ANY(%(cases)s) ORDER BY id FOR UPDATE", expired)
        # What the statistics keep of them: their part of each atom, and where they ran away
        # (directory/handoff_rollups.py), under new numbers that lead back to no case.
        conn.execute("SELECT handoff_rollup_archive(%(cases)s::uuid[])", expired)
        conn.execute("DELETE FROM case_event WHERE case_id = ANY(%(cases)s)", expired)
        conn.execute("DELETE FROM handoff_event WHERE case_id = ANY(%(cases)s)", expired)
        conn.execute(
            "DELETE FROM handoff_assignee WHERE handoff_id IN (SELECT id FROM handoff WHERE case_id = ANY(%(cases)s))",
            expired,
        )
        handoffs = conn.execute("DELETE FROM handoff WHERE case_id = ANY(%(cases)s)", expired).rowcount
        cases = conn.execute("DELETE FROM case_record WHERE id = ANY(%(cases)s)", expired).rowcount
        audit = conn.execute(
            "DELETE FROM audit_event WHERE at < %(cutoff)s", {"cutoff": now - timedelta(days=audit_days)}
        ).rowcount
        conn.execute(
            "DELETE FROM idempotency_key WHERE created_at < %(cutoff)s", {"cutoff": now - IDEMPOTENCY_KEYS_KEPT}
        )
    return RetentionReport(cases=cases, handoffs=handoffs, audit_rows=audit)
