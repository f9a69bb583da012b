"""Opening hours as a search reads them: "open at" and "next opening" from precomputed calendars.

The SQL functions `service_is_open` / `service_next_opening` are the definition of opening hours
(api/migrations/versions/…_opening_calendars.py): a service's intervals are spans of real time from
the instant their start names in its time zone to the instant their end names, its zone's public
holidays close the day, a dated exception replaces it, a temporary closure wins over everything, and
the next opening is the first instant after `at` at which the service is open — the earliest opening
within the next 15 local days outside any closure, or the closure's end if it is open then. They run
plpgsql per row, one query per day; a page of closed services spent most of its time there.

`opening_calendar` holds the same answer precomputed: per distinct (schedule, time zone, holiday
zone), the open spans of a weekly schedule over a 120-day window, kept by triggers in the same
transaction as the writes. The expressions below read a calendar only inside its window and under
the key the service has now; otherwise they call the functions. So a missing or expired calendar
makes a search slower, never wrong, and an `open_at` far in the past or future still answers right.
Closures stay on the service and are applied at read time (they change often, calendars do not).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BYTEA, TSTZMULTIRANGE
from sqlmodel import Field, SQLModel

# A next opening may lie 15 local days ahead: a calendar answers it when its window reaches that far.
NEXT_OPENING_REACH = "17 days"


class OpeningCalendar(SQLModel, table=True):
    """The open spans of one weekly schedule in one time zone and holiday zone, over a window."""

    __tablename__ = "opening_calendar"

    schedule_digest: bytes = Field(sa_column=sa.Column(BYTEA, primary_key=True))
    timezone: str = Field(primary_key=True, max_length=64)
    holiday_zone: str = Field(primary_key=True, max_length=4)
    valid_from: datetime = Field(sa_type=sa.DateTime(timezone=True))
    valid_until: datetime = Field(sa_type=sa.DateTime(timezone=True))
    open: Any = Field(sa_column=sa.Column(TSTZMULTIRANGE, nullable=False))


def _closure() -> str:
    return "service_closed_for(s.status, s.closed_from, s.closed_until, {at})"


def open_at_sql(at: str, tz: str, zone: str) -> str:
    """Whether service `s` is open at `at` (true, false, or null when its hours are unknown), `tz` and
    `zone` being the SQL of its time zone and holiday zone."""
    calendar = f"""(SELECT c.open @> {at} FROM opening_calendar c
                     WHERE c.schedule_digest = schedule_digest(s.schedule) AND c.timezone = {tz}
                       AND c.holiday_zone = {zone} AND {at} >= c.valid_from AND {at} < c.valid_until)"""
    function = f"service_is_open(s.schedule, s.status, s.closed_from, s.closed_until, {tz}, {zone}, {at})"
    return f"""(CASE WHEN {_closure().format(at=at)} THEN false
                     WHEN s.schedule->>'mode' IN ('always', 'on_call') THEN true
                     WHEN s.schedule->>'mode' = 'unknown' THEN NULL
                     ELSE coalesce({calendar}, {function}) END)"""


def next_opening_sql(at: str, tz: str, zone: str) -> str:
    """When service `s`, closed at `at`, next opens (null: not within reach, or hours unknown).

    From a calendar: the first span after `at` once the closure is cut out of it if it starts within 15
    local days (or is the closure's end), else the closure's end if the service is open then. The calendar must
    reach 15 days past `at` and past the closure's end; '-infinity' stands for "the calendar says
    none", so that null can mean "no calendar: ask the function"."""
    # An inverted closure closes nothing (as service_closed_for reads it), rather than failing.
    closure = (
        "CASE WHEN s.status = 'temporarily_closed' AND NOT coalesce(s.closed_from > s.closed_until, false)"
        " THEN tstzmultirange(tstzrange(s.closed_from, s.closed_until)) ELSE '{}'::tstzmultirange END"
    )
    calendar = f"""(SELECT coalesce(
                        CASE WHEN (s.status = 'temporarily_closed' AND first.at = s.closed_until)
                               OR (first.at AT TIME ZONE c.timezone)::date <= ({at} AT TIME ZONE c.timezone)::date + 15
                             THEN first.at END,
                        first.reopens,
                        '-infinity')
                      FROM opening_calendar c,
                           LATERAL (SELECT min(lower(r)) AS at,
                                           min(lower(r)) FILTER (WHERE s.status = 'temporarily_closed'
                                                                   AND lower(r) = s.closed_until) AS reopens
                                      FROM unnest(c.open - {closure}) r
                                     WHERE lower(r) > {at}) first
                     WHERE c.schedule_digest = schedule_digest(s.schedule) AND c.timezone = {tz}
                       AND c.holiday_zone = {zone} AND {at} >= c.valid_from
                       AND {at} + interval '{NEXT_OPENING_REACH}' <= c.valid_until
                       AND (s.closed_until IS NULL OR s.closed_until < c.valid_until))"""
    function = f"service_next_opening(s.schedule, s.status, s.closed_from, s.closed_until, {tz}, {zone}, {at})"
    return f"""(SELECT CASE WHEN s.status = 'suspended' THEN NULL
                            WHEN s.schedule->>'mode' <> 'weekly' OR projected.at IS NULL THEN {function}
                            WHEN projected.at = '-infinity' THEN NULL ELSE projected.at END
                  FROM (SELECT CASE WHEN s.schedule->>'mode' = 'weekly' THEN {calendar} END AS at
                         OFFSET 0) projected)"""  # fenced: read once, not once per reference above


def refresh(conn: psycopg.Connection, *, rebuild: bool = False) -> tuple[int, int]:
    """Build the calendars current services need (all of them with `rebuild`, else those missing or with
    less than 30 days of window left) and drop those no service uses; returns (built, dropped).
    Run as the schema owner: the application role only reads calendars."""
    with conn.transaction():
        if rebuild:
            conn.execute("DELETE FROM opening_calendar")
        row = conn.execute(
            "SELECT ensure_calendars(ARRAY(SELECT id FROM service WHERE schedule->>'mode' = 'weekly'"
            " AND archived_at IS NULL))"
        ).fetchone()
        dropped = conn.execute(
            """DELETE FROM opening_calendar c
                WHERE NOT EXISTS (SELECT 1 FROM service s WHERE s.archived_at IS NULL
                                     AND schedule_digest(s.schedule) = c.schedule_digest)"""
        ).rowcount
    return (row[0] if row else 0), dropped
