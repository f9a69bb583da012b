"""OpenStreetMap opening_hours → Maillage schedules: what is carried over exactly, and what becomes
unknown (never a guess that could send someone to a closed door)."""

import pytest

from directory.osm_hours import convert

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri")


def test_weekday_hours_closed_on_public_holidays() -> None:
    result = convert("Mo-Fr 08:30-12:30,14:00-17:00; PH off")
    assert result.problem is None
    assert result.schedule == {
        "mode": "weekly",
        "weekly": {day: [["08:30", "12:30"], ["14:00", "17:00"]] for day in WEEKDAYS},
        "closed_on_public_holidays": True,
        "exceptions": [],
    }


def test_without_a_public_holiday_rule_holidays_follow_the_week() -> None:
    """The OSM specification: no PH rule means a holiday is an ordinary day."""
    result = convert("Mo,We 10:00-12:00; Sa 09:00-13:00")
    assert result.schedule == {
        "mode": "weekly",
        "weekly": {"mon": [["10:00", "12:00"]], "wed": [["10:00", "12:00"]], "sat": [["09:00", "13:00"]]},
        "closed_on_public_holidays": False,
        "exceptions": [],
    }


def test_nights_are_cut_at_midnight() -> None:
    result = convert("Fr-Sa 22:00-02:00")
    assert result.schedule["weekly"] == {
        "fri": [["22:00", "24:00"]],
        "sat": [["00:00", "02:00"], ["22:00", "24:00"]],
        "sun": [["00:00", "02:00"]],
    }


def test_always_open() -> None:
    assert convert("24/7").schedule == {"mode": "always"}
    closed_on_holidays = convert("24/7; PH off").schedule
    assert closed_on_holidays["mode"] == "weekly"
    assert closed_on_holidays["closed_on_public_holidays"] is True
    assert closed_on_holidays["weekly"]["sun"] == [["00:00", "24:00"]]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("du lundi au vendredi", "not OpenStreetMap opening_hours syntax"),
        ("Jan-Jun Mo 09:00-12:00; Jul-Dec Tu 09:00-12:00", "the hours change over the year"),
        ('Mo 09:00-12:00 "sur rendez-vous"', "a comment qualifies the hours (by appointment, on call…)"),
        ("Mo-Fr 09:00-12:00 unknown", "the hours say their state is unknown"),
        ("Mo-Fr 09:00-12:00; PH 10:00-11:00", "public holidays have hours of their own"),
        ("off", "the hours never open"),
        ("2031 Mo 09:00-12:00", "the hours change over the year"),
        ("Mo-Fr 09:00-17:00; Aug off", "the hours change over the year"),
        ("Mo-Fr 09:00-17:00; Dec 24-Jan 01 off", "the hours change over the year"),
        ("Mo-Fr 09:00-17:00; week 32-34 off", "the hours change over the year"),
        ("Mo-Fr 09:00-17:00; SH off", "the hours depend on school holidays"),
    ],
)
def test_what_a_week_cannot_say_is_unknown_with_the_reason(expression: str, problem: str) -> None:
    result = convert(expression)
    assert result.schedule == {"mode": "unknown"}
    assert result.problem == problem
