"""The opening calendars answer exactly as the functions that define opening hours, and searches read
them: 1,200 random (schedule, closure, zone, instant) cases, DST nights, overseas holidays and the
calendar window's edges included, compared one by one."""

from __future__ import annotations

import json
import random
from datetime import timedelta

import psycopg
import pytest
from psycopg import AsyncConnection

from directory import hours
from tests.database import plain
from tests.directory import hours_cases

CASES = 1200


async def test_calendars_answer_as_the_functions(owner: AsyncConnection) -> None:
    rng = random.Random(119)
    schedules = [hours_cases.schedule(rng) for _ in range(40)] + [{"mode": "unknown"}, {"mode": "always"}]
    rows = []
    for n in range(CASES):
        at = hours_cases.instant(rng)
        tz, zone = rng.choice(hours_cases.ZONES)
        status, closed_from, closed_until = hours_cases.status(rng, at)
        rows.append((n, json.dumps(rng.choice(schedules)), status, closed_from, closed_until, tz, zone, at))
    await owner.execute(
        """CREATE TEMP TABLE hours_case (id int, schedule jsonb, status text, closed_from timestamptz,
                                           closed_until timestamptz, tz text, zone text, at timestamptz)
           ON COMMIT DROP"""
    )
    async with owner.cursor() as cur:
        await cur.executemany("INSERT INTO hours_case VALUES (%s, %s, %s, %s, %s, %s, %s, %s)", rows)
    start, days = hours_cases.WINDOW
    await owner.execute(
        """INSERT INTO opening_calendar (schedule_digest, timezone, holiday_zone, valid_from, valid_until, open)
           SELECT DISTINCT ON (1, 2, 3) schedule_digest(schedule), tz, zone, %(start)s, %(end)s,
                  calendar_open(schedule, tz, zone, %(start)s, %(end)s)
             FROM hours_case WHERE schedule->>'mode' = 'weekly'
           ON CONFLICT DO NOTHING""",
        {"start": start, "end": start + timedelta(days=days)},
    )
    open_at = hours.open_at_sql("s.at", "s.tz", "s.zone")
    next_opening = hours.next_opening_sql("s.at", "s.tz", "s.zone")
    reference_open = "service_is_open(s.schedule, s.status, s.closed_from, s.closed_until, s.tz, s.zone, s.at)"
    reference_next = "service_next_opening(s.schedule, s.status, s.closed_from, s.closed_until, s.tz, s.zone, s.at)"
    result = await (
        await owner.execute(
            f"""SELECT s.id, {open_at}, {reference_open},
                       CASE WHEN {reference_open} IS FALSE THEN {next_opening} END, {reference_next},
                       s.schedule->>'mode' = 'weekly' AND s.at >= %(start)s AND s.at < %(end)s
                  FROM hours_case s ORDER BY s.id""",
            {"start": start, "end": start + timedelta(days=days)},
        )
    ).fetchall()
    mismatches = [(rows[r[0]], r[1:5]) for r in result if r[1] is not r[2] or r[3] != r[4]]
    assert mismatches == []
    # Not vacuous: most cases were read from a calendar, with every kind of answer.
    from_calendar = [r for r in result if r[5]]
    assert len(from_calendar) > CASES / 2
    assert {r[1] for r in from_calendar} == {True, False}
    assert sum(r[3] is not None for r in from_calendar) > 100
    assert sum(r[1] is False and r[3] is None for r in from_calendar) > 10  # closed, no opening within reach
    assert {r[1] for r in result} == {True, False, None}


AT = "%(at)s::timestamptz"


async def _search_hours(owner: AsyncConnection, service_id: object, at: str) -> tuple[object, object]:
    row = await (
        await owner.execute(
            f"""SELECT h.open, CASE WHEN h.open IS FALSE THEN h.next END  -- as searches ask it
                  FROM service s,
                       LATERAL (SELECT {hours.open_at_sql(AT, "'Europe/Paris'", "'FR'")} AS open,
                                       {hours.next_opening_sql(AT, "'Europe/Paris'", "'FR'")} AS next) h
                 WHERE s.id = %(id)s""",
            {"at": at, "id": service_id},
        )
    ).fetchone()
    assert row is not None
    return row[0], row[1]


OFFICE = {"mode": "weekly", "weekly": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}


async def _service(owner: AsyncConnection, schedule: dict, commune: str = "75056") -> object:
    row = await (
        await owner.execute(
            """WITH o AS (INSERT INTO organisation (id, name, kind, seat_commune_code, verification)
                          VALUES (gen_random_uuid(), 'Calendrier', 'association', %(commune)s, 'unverified')
                          RETURNING id)
               INSERT INTO service (id, organisation_id, name, specialisms, schedule)
               SELECT gen_random_uuid(), o.id, 'Horaires', ARRAY['legal-support']::varchar[], %(schedule)s FROM o
               RETURNING id""",
            {"commune": commune, "schedule": json.dumps(schedule)},
        )
    ).fetchone()
    assert row is not None
    return row[0]


async def _calendars(owner: AsyncConnection, schedule: dict) -> list[tuple[str, str]]:
    rows = await (
        await owner.execute(
            "SELECT timezone, holiday_zone FROM opening_calendar WHERE schedule_digest = schedule_digest(%s::jsonb)"
            " ORDER BY 1, 2",
            (json.dumps(schedule),),
        )
    ).fetchall()
    return [(r[0], r[1]) for r in rows]


async def test_writes_keep_calendars_in_the_same_transaction(owner: AsyncConnection) -> None:
    schedule = {**OFFICE, "exceptions": [{"date": "2027-01-04", "hours": [["10:00", "11:00"]]}]}
    assert await _calendars(owner, schedule) == []
    service = await _service(owner, schedule)
    assert await _calendars(owner, schedule) == [("Europe/Paris", "FR")]
    # Moving the organisation's seat overseas builds that zone's calendar as well.
    await owner.execute(
        "UPDATE organisation SET seat_commune_code = '97411' WHERE id = (SELECT organisation_id FROM service"
        " WHERE id = %s)",
        (service,),
    )
    assert await _calendars(owner, schedule) == [("Europe/Paris", "FR"), ("Indian/Reunion", "974")]
    # A new public holiday drops the calendars of its zone only; the refresh command rebuilds them,
    # and drops those no service uses any more.
    await owner.execute("INSERT INTO public_holiday (zone, day, name) VALUES ('974', '2027-02-02', 'Essai')")
    assert await _calendars(owner, schedule) == [("Europe/Paris", "FR")]
    # Renaming a holiday (as every `maillage seed` does) drops nothing.
    await owner.execute("UPDATE public_holiday SET name = name || ' ' WHERE zone = 'FR'")
    assert await _calendars(owner, schedule) == [("Europe/Paris", "FR")]
    await owner.execute("SELECT ensure_calendars(ARRAY[%s]::uuid[])", (service,))
    assert await _calendars(owner, schedule) == [("Europe/Paris", "FR"), ("Indian/Reunion", "974")]


def test_refresh_builds_what_services_need_and_drops_the_rest(owner_url: str) -> None:
    conn = psycopg.connect(plain(owner_url))
    try:
        schedule = json.dumps({**OFFICE, "closed_on_public_holidays": False})
        service = conn.execute(
            """INSERT INTO service (id, organisation_id, name, specialisms, schedule)
               SELECT gen_random_uuid(), id, 'Horaires', ARRAY['legal-support']::varchar[], %s::jsonb
                 FROM organisation LIMIT 1 RETURNING id""",
            (schedule,),
        ).fetchone()
        assert service is not None
        conn.execute("DELETE FROM opening_calendar")
        conn.execute("INSERT INTO opening_calendar VALUES (sha256('nobody'), 'Europe/Paris', 'FR', now(), now(), '{}')")
        built, dropped = hours.refresh(conn)
        assert (built, dropped) == (1, 1)
        assert conn.execute("SELECT count(*) FROM opening_calendar").fetchone() == (1,)
        assert hours.refresh(conn) == (0, 0)  # nothing missing, nothing expiring
        assert hours.refresh(conn, rebuild=True) == (1, 0)
    finally:
        conn.rollback()
        conn.close()


async def test_searches_read_the_calendar_inside_its_window_only(owner: AsyncConnection) -> None:
    service = await _service(owner, OFFICE)
    monday_ten = "2026-12-07T10:00:00+01:00"
    monday_night = "2026-12-07T20:00:00+01:00"
    assert await _search_hours(owner, service, monday_ten) == (True, None)
    opens = await _search_hours(owner, service, monday_night)
    assert opens[0] is False
    assert opens[1] is not None
    assert opens[1].isoformat() == "2026-12-08T08:00:00+00:00"
    # Tamper with the calendar: a search that reads it says closed, with no opening in reach.
    await owner.execute(
        "UPDATE opening_calendar SET open = '{}' WHERE schedule_digest = schedule_digest(%s::jsonb)",
        (json.dumps(OFFICE),),
    )
    assert await _search_hours(owner, service, monday_ten) == (False, None)
    assert await _search_hours(owner, service, monday_night) == (False, None)
    # Outside its window the functions answer: moved into the past, the calendar is not read.
    await owner.execute(
        "UPDATE opening_calendar SET valid_from = valid_from - interval '1 year',"
        " valid_until = valid_until - interval '1 year' WHERE schedule_digest = schedule_digest(%s::jsonb)",
        (json.dumps(OFFICE),),
    )
    assert await _search_hours(owner, service, monday_ten) == (True, None)
    assert (await _search_hours(owner, service, monday_night))[1] == opens[1]


async def test_the_application_role_only_reads_calendars(reader: AsyncConnection) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await reader.execute("SELECT ensure_calendars(ARRAY[]::uuid[])")


async def _reference(owner: AsyncConnection, service_id: object, at: str) -> tuple[object, object]:
    row = await (
        await owner.execute(
            """SELECT service_is_open(schedule, status, closed_from, closed_until, 'Europe/Paris', 'FR', %(at)s),
                      service_next_opening(schedule, status, closed_from, closed_until, 'Europe/Paris', 'FR', %(at)s)
                 FROM service WHERE id = %(id)s""",
            {"at": at, "id": service_id},
        )
    ).fetchone()
    assert row is not None
    return row[0], row[1]


async def test_a_reopening_beyond_15_days_and_an_inverted_closure(owner: AsyncConnection) -> None:
    # Open only on two dated days; closed from 1 January to the middle of the second one.
    schedule = {
        "mode": "weekly",
        "weekly": {},
        "exceptions": [
            {"date": "2026-12-28", "hours": [["09:00", "17:00"]]},
            {"date": "2027-01-06", "hours": [["09:00", "17:00"]]},
        ],
    }
    service = await _service(owner, schedule)
    await owner.execute(
        "UPDATE service SET status = 'temporarily_closed', closed_from = '2027-01-01T00:00:00+01:00',"
        " closed_until = '2027-01-06T12:00:00+01:00' WHERE id = %s",
        (service,),
    )
    at = "2026-12-07T10:00:00+01:00"  # nothing within 15 days: the closure's end, open then, is next
    assert await _search_hours(owner, service, at) == await _reference(owner, service, at)
    assert (await _search_hours(owner, service, at))[1].isoformat() == "2027-01-06T11:00:00+00:00"  # type: ignore[union-attr]
    # A closure whose end comes before its start (only the API refuses it) closes nothing, and fails nothing.
    await owner.execute(
        "UPDATE service SET closed_from = '2027-01-06T12:00:00+01:00', closed_until = '2027-01-01T00:00:00+01:00'"
        " WHERE id = %s",
        (service,),
    )
    assert await _search_hours(owner, service, at) == await _reference(owner, service, at)
