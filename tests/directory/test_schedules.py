"""Opening hours, read in the service's own time zone with its zone's public holidays.

These exercise the SQL functions service_is_open / service_next_opening, the definition of opening
hours; the opening calendars searches read are checked against them in test_hours_projection.py."""

import json
from datetime import datetime

import pytest
from psycopg import AsyncConnection

OFFICE = {"mode": "weekly", "weekly": {d: [["09:00", "17:00"]] for d in ("mon", "tue", "wed", "thu", "fri")}}
NIGHT = {
    "mode": "weekly",
    "weekly": {"fri": [["22:00", "02:00"]], "sat": [["20:00", "24:00"]]},
    "closed_on_public_holidays": False,
}


async def _open(
    reader: AsyncConnection,
    schedule: dict,
    at: str,
    *,
    tz: str = "Europe/Paris",
    zone: str = "FR",
    status: str = "active",
    closed: tuple[str | None, str | None] = (None, None),
) -> bool | None:
    row = await (
        await reader.execute(
            "SELECT service_is_open(%s::jsonb, %s, %s::timestamptz, %s::timestamptz, %s, %s, %s::timestamptz)",
            (json.dumps(schedule), status, closed[0], closed[1], tz, zone, at),
        )
    ).fetchone()
    return row[0]


async def _next(
    reader: AsyncConnection,
    schedule: dict,
    at: str,
    *,
    tz: str = "Europe/Paris",
    zone: str = "FR",
    status: str = "active",
    closed: tuple[str | None, str | None] = (None, None),
) -> datetime | None:
    row = await (
        await reader.execute(
            "SELECT service_next_opening(%s::jsonb, %s, %s::timestamptz, %s::timestamptz, %s, %s, %s::timestamptz)",
            (json.dumps(schedule), status, closed[0], closed[1], tz, zone, at),
        )
    ).fetchone()
    return row[0]


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-12-01T08:59:59+01:00", False),  # Tuesday, one second before opening (Paris time)
        ("2026-12-01T09:00:00+01:00", True),
        ("2026-12-01T16:59:59+01:00", True),
        ("2026-12-01T17:00:00+01:00", False),  # closing time is exclusive
        ("2026-12-01T08:30:00+00:00", True),  # 09:30 in Paris, given in UTC
        ("2026-12-05T10:00:00+01:00", False),  # Saturday
        ("2026-12-25T10:00:00+01:00", False),  # Christmas, a Friday
        ("2026-05-01T10:00:00+02:00", False),  # 1 May, a Friday
        ("2026-05-14T10:00:00+02:00", False),  # Ascension
    ],
)
async def test_office_hours_in_paris(reader: AsyncConnection, at: str, expected: bool) -> None:
    assert await _open(reader, OFFICE, at) is expected


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        ("2026-12-04T21:59:00+01:00", False),
        ("2026-12-04T23:59:59+01:00", True),  # Friday night, before midnight
        ("2026-12-05T00:00:00+01:00", True),  # after midnight: Friday's interval runs on
        ("2026-12-05T01:59:59+01:00", True),
        ("2026-12-05T02:00:00+01:00", False),
        ("2026-12-05T20:00:00+01:00", True),  # Saturday until 24:00
        ("2026-12-05T23:59:59+01:00", True),
        ("2026-12-06T00:00:00+01:00", False),
        ("2026-12-25T23:00:00+01:00", True),  # open on holidays when the service says so
    ],
)
async def test_intervals_across_midnight(reader: AsyncConnection, at: str, expected: bool) -> None:
    assert await _open(reader, NIGHT, at) is expected


async def test_daylight_saving_changes(reader: AsyncConnection) -> None:
    # 29 March 2026: Paris jumps from 02:00 CET to 03:00 CEST; 25 October: back from 03:00 to 02:00.
    early = {"mode": "weekly", "weekly": {"sun": [["01:00", "04:00"]]}, "closed_on_public_holidays": False}
    assert await _open(reader, early, "2026-03-29T00:30:00+00:00") is True  # 01:30 CET
    assert await _open(reader, early, "2026-03-29T01:30:00+00:00") is True  # 03:30 CEST
    assert await _open(reader, early, "2026-03-29T02:00:00+00:00") is False  # 04:00 CEST
    assert await _open(reader, early, "2026-10-25T00:30:00+00:00") is True  # 02:30 CEST
    assert await _open(reader, early, "2026-10-25T01:30:00+00:00") is True  # 02:30 CET, the second time
    assert await _open(reader, early, "2026-10-25T03:00:00+00:00") is False  # 04:00 CET
    # Opening at 09:00 local is 07:00 UTC in summer and 08:00 UTC in winter.
    assert await _next(reader, OFFICE, "2026-03-27T17:00:00+01:00") == datetime.fromisoformat(
        "2026-03-30T07:00:00+00:00"
    )
    assert await _next(reader, OFFICE, "2026-10-23T17:00:00+02:00") == datetime.fromisoformat(
        "2026-10-26T08:00:00+00:00"
    )


@pytest.mark.parametrize(
    ("tz", "zone", "at", "expected"),
    [
        # 09:30 in Saint-Denis de La Réunion is 05:30 UTC; 08:30 there is closed although Paris is open.
        ("Indian/Reunion", "974", "2026-12-01T05:30:00+00:00", True),
        ("Indian/Reunion", "974", "2026-12-01T04:30:00+00:00", False),
        # Guadeloupe is UTC-4: 16:30 there is 20:30 UTC, when Paris has long closed.
        ("America/Guadeloupe", "971", "2026-12-01T20:30:00+00:00", True),
        ("America/Guadeloupe", "971", "2026-12-01T21:30:00+00:00", False),
        # Abolition of slavery: 20 December in La Réunion (a Friday in 2024), 27 May in Guadeloupe.
        ("Indian/Reunion", "974", "2024-12-20T06:00:00+00:00", False),
        ("Europe/Paris", "FR", "2024-12-20T09:00:00+00:00", True),
        ("America/Guadeloupe", "971", "2026-05-27T14:00:00+00:00", False),
        # Alsace-Moselle: 26 December (a Saturday in 2026, so use 2025, a Friday) and Good Friday.
        ("Europe/Paris", "6AE", "2025-12-26T10:00:00+01:00", False),
        ("Europe/Paris", "FR", "2025-12-26T10:00:00+01:00", True),
        ("Europe/Paris", "57", "2026-04-03T10:00:00+02:00", False),
        ("Europe/Paris", "FR", "2026-04-03T10:00:00+02:00", True),
    ],
)
async def test_overseas_time_zones_and_local_holidays(
    reader: AsyncConnection, tz: str, zone: str, at: str, expected: bool
) -> None:
    assert await _open(reader, OFFICE, at, tz=tz, zone=zone) is expected


async def test_dated_exceptions_replace_the_day(reader: AsyncConnection) -> None:
    schedule = {
        **OFFICE,
        "exceptions": [{"date": "2026-12-24", "hours": [["09:00", "12:00"]]}, {"date": "2026-12-02", "hours": []}],
    }
    assert await _open(reader, schedule, "2026-12-24T11:00:00+01:00") is True
    assert await _open(reader, schedule, "2026-12-24T13:00:00+01:00") is False
    assert await _open(reader, schedule, "2026-12-02T10:00:00+01:00") is False
    assert await _next(reader, schedule, "2026-12-01T18:00:00+01:00") == datetime.fromisoformat(
        "2026-12-03T08:00:00+00:00"
    )


async def test_always_on_call_and_unknown(reader: AsyncConnection) -> None:
    at = "2026-12-25T03:00:00+01:00"
    assert await _open(reader, {"mode": "always"}, at) is True
    assert await _open(reader, {"mode": "on_call"}, at) is True
    assert await _open(reader, {"mode": "unknown"}, at) is None
    assert await _next(reader, {"mode": "unknown"}, at) is None


async def test_temporary_closures_and_suspension(reader: AsyncConnection) -> None:
    window = ("2026-12-01T00:00:00+01:00", "2026-12-10T00:00:00+01:00")
    inside, after = "2026-12-03T10:00:00+01:00", "2026-12-10T10:00:00+01:00"
    assert await _open(reader, OFFICE, inside, status="temporarily_closed", closed=window) is False
    assert await _open(reader, OFFICE, after, status="temporarily_closed", closed=window) is True
    assert await _open(reader, {"mode": "always"}, inside, status="temporarily_closed", closed=window) is False
    assert await _open(reader, {"mode": "always"}, inside, status="temporarily_closed", closed=(None, None)) is False
    assert await _open(reader, {"mode": "always"}, inside, status="suspended") is False
    # Reopening: a 24/7 service reopens when the closure ends; an office at its next hours after it.
    assert await _next(reader, {"mode": "always"}, inside, status="temporarily_closed", closed=window) == (
        datetime.fromisoformat("2026-12-09T23:00:00+00:00")
    )
    assert await _next(reader, OFFICE, inside, status="temporarily_closed", closed=window) == (
        datetime.fromisoformat("2026-12-10T08:00:00+00:00")
    )
    # A closure that has not started yet is skipped over.
    assert await _next(
        reader,
        OFFICE,
        "2026-11-30T18:00:00+01:00",
        status="temporarily_closed",
        closed=("2026-12-01T00:00:00+01:00", "2026-12-03T00:00:00+01:00"),
    ) == (datetime.fromisoformat("2026-12-03T08:00:00+00:00"))
    assert await _next(reader, OFFICE, inside, status="suspended") is None


async def test_next_opening_skips_weekends_and_holidays(reader: AsyncConnection) -> None:
    # Thursday 24 December 2026 after hours → Friday 25 is Christmas → Monday 28 at 09:00 Paris.
    assert await _next(reader, OFFICE, "2026-12-24T18:00:00+01:00") == datetime.fromisoformat(
        "2026-12-28T08:00:00+00:00"
    )
    assert await _next(reader, OFFICE, "2026-12-01T10:00:00+01:00") is None  # open now
    assert await _next(reader, {"mode": "weekly", "weekly": {}}, "2026-12-01T10:00:00+01:00") is None  # never


async def test_a_closure_that_starts_later(reader: AsyncConnection) -> None:
    # Closed from Wednesday 2 December 00:00 to Friday 4 December 12:00, in the middle of the hours.
    closed = ("2026-12-02T00:00:00+01:00", "2026-12-04T12:00:00+01:00")
    kwargs = {"status": "temporarily_closed", "closed": closed}
    # On Monday evening the closure has not started: Tuesday's opening is not hidden behind it.
    assert await _open(reader, OFFICE, "2026-11-30T10:00:00+01:00", **kwargs) is True
    assert await _next(reader, OFFICE, "2026-11-30T18:00:00+01:00", **kwargs) == datetime.fromisoformat(
        "2026-12-01T08:00:00+00:00"
    )
    # On Tuesday evening the next opening is the closure's end, in the middle of Friday's hours.
    assert await _next(reader, OFFICE, "2026-12-01T18:00:00+01:00", **kwargs) == datetime.fromisoformat(
        "2026-12-04T11:00:00+00:00"
    )
    assert await _open(reader, OFFICE, "2026-12-04T11:59:59+01:00", **kwargs) is False
    assert await _open(reader, OFFICE, "2026-12-04T12:00:00+01:00", **kwargs) is True
