"""OpenStreetMap `opening_hours` (the syntax data·inclusion publishes) → a Maillage schedule, or unknown.

The expression is read by opening-hours-py (the reference Rust implementation of the OSM
specification), never by hand. A Maillage schedule is a week that repeats, closed or not on public
holidays; an expression that says more than that (seasons, dated rules, "open on public holidays
with other hours", comments such as "sur rendez-vous", an "unknown" state) cannot be carried over
faithfully, so it becomes `{"mode": "unknown"}` with the reason: a specialist must never read
"open" for a door that may be closed.

How: the expression is evaluated over reference weeks in four seasons without a country (so public
holidays never apply); if they are not the same week it is seasonal. The public-holiday rule is then
read by evaluating one year with France's holidays: closed on every holiday where the week is open,
or the same as the week.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

import holidays
import opening_hours
from pydantic import ValidationError

from .schemas import Schedule

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# Mondays of weeks without a French public holiday, one per season and each in another year (so a
# rule for one year is seen to change), in the future and fixed, so that a conversion never depends
# on the day it runs.
_REFERENCE_MONDAYS = (datetime(2030, 1, 14), datetime(2031, 4, 7), datetime(2032, 7, 5), datetime(2033, 10, 10))
_HOLIDAY_YEAR = (datetime(2031, 1, 1), datetime(2032, 1, 1))
_MAX_INTERVALS_PER_DAY = 6
WEEK_MINUTES = 7 * 24 * 60


@dataclass(frozen=True)
class Conversion:
    schedule: dict[str, Any]
    # Why the hours could not be carried over (None when they were).
    problem: str | None = None


UNKNOWN = {"mode": "unknown"}
# School holidays (SH) differ by academy zone and year: the parser has no calendar of them here.
_SCHOOL_HOLIDAYS = re.compile(r"\bSH\b")
# What the parser raises on a bad expression (its type stubs say SyntaxError; the module has its own).
PARSER_ERROR: type[Exception] = getattr(opening_hours, "ParserError", SyntaxError)


def _week(expression: opening_hours.OpeningHours, monday: datetime) -> tuple[tuple[int, int], ...] | str:
    """Open spans of one week in minutes from Monday 00:00, or why they cannot be read."""
    spans = []
    for start, end, state, comment in expression.intervals(monday, monday + timedelta(days=7)):
        if comment:
            return "a comment qualifies the hours (by appointment, on call…)"
        name = str(state).rsplit(".", 1)[-1].lower()
        if name == "unknown":
            return "the hours say their state is unknown"
        if name == "open":
            end = min(end or monday + timedelta(days=7), monday + timedelta(days=7))
            spans.append((int((start - monday).total_seconds() // 60), int((end - monday).total_seconds() // 60)))
    return tuple(spans)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _weekly(spans: tuple[tuple[int, int], ...]) -> dict[str, list[list[str]]] | None:
    """Spans cut at midnights into each day's intervals (an end at midnight is written 24:00)."""
    days = {
        DAYS[day]: [[_clock(start - day * 1440), _clock(end - day * 1440)] for start, end in hours]
        for day, hours in enumerate(_by_day(spans))
        if hours
    }
    if any(len(intervals) > _MAX_INTERVALS_PER_DAY for intervals in days.values()):
        return None
    return days


def _by_day(spans: tuple[tuple[int, int], ...]) -> list[list[tuple[int, int]]]:
    days: list[list[tuple[int, int]]] = [[] for _ in DAYS]
    for start, end in spans:
        while start < end:
            day = start // (24 * 60)
            stop = min(end, (day + 1) * 24 * 60)
            days[day].append((start, stop))
            start = stop
    return days


def _holidays_closed(text: str, week: tuple[tuple[int, int], ...]) -> bool | str:
    """True when every French public holiday closes the day, False when holidays follow the week,
    or why neither is true."""
    with_holidays = opening_hours.OpeningHours(text, country="FR")
    public_holidays = set(holidays.France(years=range(_HOLIDAY_YEAR[0].year - 1, _HOLIDAY_YEAR[1].year + 1)))
    usual = _by_day(week)
    closed = 0
    monday = _HOLIDAY_YEAR[0] - timedelta(days=_HOLIDAY_YEAR[0].weekday())
    while monday < _HOLIDAY_YEAR[1]:
        actual = _week(with_holidays, monday)
        if isinstance(actual, str):
            return actual
        for day, hours in enumerate(_by_day(actual)):
            if hours != usual[day]:
                if (monday + timedelta(days=day)).date() not in public_holidays:
                    return "the hours change over the year"  # a closed August, a Christmas week…
                if hours:  # a holiday that is neither the usual day nor closed all day
                    return "public holidays have hours of their own"
                closed += 1
        monday += timedelta(days=7)
    return closed > 0


@lru_cache(maxsize=4096)
def convert(text: str) -> Conversion:
    """The schedule an expression means, or unknown with the reason. Cached: a source repeats the same
    few hundred expressions across thousands of services."""
    if _SCHOOL_HOLIDAYS.search(text):
        return Conversion(UNKNOWN, "the hours depend on school holidays")
    try:
        expression = opening_hours.OpeningHours(text)
    except (PARSER_ERROR, SyntaxError, ValueError):
        return Conversion(UNKNOWN, "not OpenStreetMap opening_hours syntax")
    weeks = [_week(expression, monday) for monday in _REFERENCE_MONDAYS]
    for week in weeks:
        if isinstance(week, str):
            return Conversion(UNKNOWN, week)
    if len(set(weeks)) > 1:
        return Conversion(UNKNOWN, "the hours change over the year")
    week = weeks[0]
    assert not isinstance(week, str)
    if not week:
        return Conversion(UNKNOWN, "the hours never open")
    holidays = _holidays_closed(text, week)
    if isinstance(holidays, str):
        return Conversion(UNKNOWN, holidays)
    if week == ((0, WEEK_MINUTES),) and not holidays:
        return Conversion({"mode": "always"})
    weekly = _weekly(week)
    if weekly is None:
        return Conversion(UNKNOWN, f"more than {_MAX_INTERVALS_PER_DAY} intervals in a day")
    try:  # what a partner could have written through the API, by the same rules
        schedule = Schedule.model_validate({"mode": "weekly", "weekly": weekly, "closed_on_public_holidays": holidays})
    except ValidationError:
        return Conversion(UNKNOWN, "hours Maillage's schedules cannot hold")
    return Conversion(schedule.stored())
