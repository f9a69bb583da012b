"""Retention (CNIL): closed cases go after N years with their handoffs and events, keeping only
anonymous monthly counts; audit rows go after their own period. Runs as the schema owner: the
application's role cannot delete anything."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta

import psycopg
from sqlmodel import Field, SQLModel

IDEMPOTENCY_KEYS_KEPT = timedelta(days=7)


@dataclass(frozen=True)
class RetentionReport:
    cases: int
    handoffs: int
    audit_rows: int


def apply(conn: psycopg.Connection, *, now: datetime, case_years: int, audit_days: int) -> RetentionReport:
    cutoff = now.replace(year=now.year - case_years)
    with conn.transaction():
        expired = "SELECT id FROM case_record WHERE status = 'closed' AND closed_at < %(cutoff)s"
        conn.execute(
            f"""INSERT INTO handoff_archive (collectivite_code, month, kind, status, handoffs)
                SELECT collectivite_code, created_month, kind, status, count(*)
                  FROM handoff WHERE case_id IN ({expired}) AND status <> 'entered_in_error'
                 GROUP BY 1, 2, 3, 4
                ON CONFLICT (collectivite_code, month, kind, status)
                DO UPDATE SET handoffs = handoff_archive.handoffs + EXCLUDED.handoffs""",
            {"cutoff": cutoff},
        )
        conn.execute(f"DELETE FROM case_event WHERE case_id IN ({expired})", {"cutoff": cutoff})
        conn.execute(f"DELETE FROM handoff_event WHERE case_id IN ({expired})", {"cutoff": cutoff})
        handoffs = conn.execute(f"DELETE FROM handoff WHERE case_id IN ({expired})", {"cutoff": cutoff}).rowcount
        cases = conn.execute(
            "DELETE FROM case_record WHERE status = 'closed' AND closed_at < %(cutoff)s", {"cutoff": cutoff}
        ).rowcount
        audit = conn.execute(
            "DELETE FROM audit_event WHERE at < %(cutoff)s", {"cutoff": now - timedelta(days=audit_days)}
        ).rowcount
        conn.execute(
            "DELETE FROM idempotency_key WHERE created_at < %(cutoff)s", {"cutoff": now - IDEMPOTENCY_KEYS_KEPT}
        )
    return RetentionReport(cases=cases, handoffs=handoffs, audit_rows=audit)


class HandoffArchive(SQLModel, table=True):
    """What retention keeps of deleted cases: anonymous monthly counts, for long-run statistics."""

    __tablename__ = "handoff_archive"

    collectivite_code: str = Field(primary_key=True, max_length=4)
    month: date = Field(primary_key=True)
    kind: str = Field(primary_key=True, max_length=32)
    status: str = Field(primary_key=True, max_length=32)
    handoffs: int
