"""Local time and public holidays, which differ overseas and in Alsace-Moselle.

"Open now" is read in the location's own time zone, with the public holidays of its zone (the
subdivisions of the `holidays` package: Moselle, Alsace, and each overseas département).
"""

from __future__ import annotations

import holidays
import psycopg

TIMEZONE_BY_DEPARTEMENT = {
    "971": "America/Guadeloupe",
    "972": "America/Martinique",
    "973": "America/Cayenne",
    "974": "Indian/Reunion",
    "976": "Indian/Mayotte",
}
HOLIDAY_ZONES = ("FR", "57", "6AE", "971", "972", "973", "974", "976")
HOLIDAY_YEARS = range(2024, 2041)


def timezone_for(departement_code: str) -> str:
    return TIMEZONE_BY_DEPARTEMENT.get(departement_code, "Europe/Paris")


def holiday_zone_for(departement_code: str) -> str:
    if departement_code in ("67", "68"):
        return "6AE"
    return departement_code if departement_code in HOLIDAY_ZONES else "FR"


def load_public_holidays(conn: psycopg.Connection, years: range = HOLIDAY_YEARS) -> int:
    """Upsert the public holidays of every zone for `years`; returns the number of rows."""
    rows = []
    for zone in HOLIDAY_ZONES:
        calendar = holidays.France(years=years, subdiv=None if zone == "FR" else zone, language="fr")
        rows += [(zone, day, name) for day, name in sorted(calendar.items())]
    with conn.cursor() as cur:
        cur.executemany(
            """INSERT INTO public_holiday (zone, day, name) VALUES (%s, %s, %s)
               ON CONFLICT (zone, day) DO UPDATE SET name = EXCLUDED.name""",
            rows,
        )
    return len(rows)
