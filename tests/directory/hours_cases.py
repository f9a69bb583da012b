"""Random opening hours for the projection's tests: schedules, closures and instants that land where
opening hours go wrong — DST nights, public holidays (overseas ones included), interval edges, the
day after an overnight span, and the edges of a calendar's window."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# (time zone, holiday zone) as the départements give them.
ZONES = (
    ("Europe/Paris", "FR"),
    ("Europe/Paris", "6AE"),
    ("Europe/Paris", "57"),
    ("Indian/Reunion", "974"),
    ("America/Guadeloupe", "971"),
    ("America/Martinique", "972"),
    ("America/Cayenne", "973"),
    ("Indian/Mayotte", "976"),
)
# Instants worth landing on (UTC): both DST nights of 2026 and the spring one of 2027, Christmas,
# 1 May, 8 May, Ascension 2027, and the abolition of slavery in La Réunion (20 Dec), Martinique
# (22 May), Guadeloupe (27 May), Guyane (10 June) and Mayotte (27 April).
LANDMARKS = tuple(
    datetime.fromisoformat(day).replace(tzinfo=UTC)
    for day in (
        "2026-10-25T00:00",
        "2027-03-28T00:00",
        "2026-12-25T06:00",
        "2026-12-20T04:00",
        "2027-05-01T07:00",
        "2027-05-08T07:00",
        "2027-05-06T07:00",
        "2027-05-22T12:00",
        "2027-05-27T12:00",
        "2027-04-27T06:00",
        "2026-12-24T16:00",
    )
)
WINDOW = (datetime(2026, 10, 1, tzinfo=UTC), 280)  # (start, days): to 8 July 2027


def _clock(rng: random.Random) -> str:
    if rng.random() < 0.1:
        return rng.choice(("00:00", "02:00", "02:30", "03:00", "23:30"))  # midnight and DST hours
    return f"{rng.randrange(24):02d}:{rng.choice((0, 15, 30, 45)):02d}"


def _intervals(rng: random.Random) -> list[list[str]]:
    spans: list[list[str]] = []
    for _ in range(rng.choice((0, 1, 1, 2))):
        start, end = _clock(rng), _clock(rng)
        if start == end:
            continue
        if rng.random() < 0.1:
            end = "24:00"
        spans.append([start, end])
    return spans


def schedule(rng: random.Random) -> dict[str, Any]:
    roll = rng.random()
    if roll < 0.06:
        return {"mode": rng.choice(("always", "on_call"))}
    if roll < 0.1:
        return {"mode": "unknown"}
    weekly = {day: _intervals(rng) for day in DAYS if rng.random() < 0.7}
    result: dict[str, Any] = {"mode": "weekly", "weekly": weekly}
    if rng.random() < 0.5:
        result["closed_on_public_holidays"] = rng.random() < 0.5
    if rng.random() < 0.3:
        days = sorted({(rng.choice(LANDMARKS) + timedelta(days=rng.randint(-2, 2))).date() for _ in range(2)})
        result["exceptions"] = [{"date": day.isoformat(), "hours": _intervals(rng)} for day in days]
    return result


def instant(rng: random.Random) -> datetime:
    start, days = WINDOW
    end = start + timedelta(days=days)
    roll = rng.random()
    if roll < 0.45:
        base = rng.choice(LANDMARKS) + timedelta(minutes=15 * rng.randint(-120, 120))
    elif roll < 0.55:  # the edges of the window, for "open at" and for the next opening's 17 days
        base = rng.choice((start, end, end - timedelta(days=17))) + timedelta(minutes=15 * rng.randint(-8, 8))
    elif roll < 0.6:  # outside the window altogether
        base = rng.choice((start - timedelta(days=40), end + timedelta(days=40)))
    else:
        base = start + timedelta(minutes=15 * rng.randrange(days * 96))
    # On a quarter hour (where intervals start and end), or a second either side of one.
    return base + timedelta(seconds=rng.choice((0, 0, 0, -1, 1)))


def status(rng: random.Random, at: datetime) -> tuple[str, datetime | None, datetime | None]:
    roll = rng.random()
    if roll < 0.05:
        return "suspended", None, None
    if roll < 0.35:

        def near() -> datetime | None:
            if rng.random() < 0.1:
                return None
            return at + timedelta(minutes=15 * rng.randint(-600, 2400), seconds=rng.choice((0, 0, 1)))

        closed_from, closed_until = near(), near()
        if closed_from and closed_until and closed_from > closed_until:
            closed_from, closed_until = closed_until, closed_from
        return "temporarily_closed", closed_from, closed_until
    return "active", None, None
