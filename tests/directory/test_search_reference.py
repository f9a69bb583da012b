"""Searches give the same pages whether they read the projections (opening calendars, search points) or
the tables and functions that define them (the statement as it was before): 500 random combinations of
origin × viewer × filters × the present moment, on the demo directory with random hours — DST nights,
an overseas public holiday and the calendar window's edges included — first pages and next pages."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import timedelta

import psycopg
import pytest
from psycopg import AsyncConnection

from api.cluster import Cluster
from directory import search
from directory.access import Principal, Role
from directory.demo import CITIES, seed_demo
from directory.seeding import HOTLINE_SEED_KEY
from directory.taxonomy import SLUGS
from tests.database import create_test_database, plain
from tests.directory import hours_cases

COMBINATIONS = 500


@dataclass(frozen=True)
class World:
    url: str
    hotline: object
    organisations: list[object]
    origins: list[tuple[float, float]]


@pytest.fixture(scope="module")
def world(cluster: Cluster) -> Iterator[World]:
    name = create_test_database(cluster, "_search_reference")
    url = cluster.url(name)
    rng = random.Random(2027)
    with psycopg.connect(plain(url)) as conn:
        seed_demo(conn, count=300)
        ids = [row[0] for row in conn.execute("SELECT id FROM service ORDER BY id").fetchall()]
        schedules = [hours_cases.schedule(rng) for _ in range(40)]
        for service_id in ids:
            if rng.random() < 0.6:
                conn.execute(
                    "UPDATE service SET schedule = %s::jsonb WHERE id = %s",
                    (json.dumps(rng.choice(schedules)), service_id),
                )
        start, days = hours_cases.WINDOW
        conn.execute("DELETE FROM opening_calendar")
        conn.execute("SELECT ensure_calendars(ARRAY(SELECT id FROM service), %s, %s)", (start, days))
        hotline = conn.execute("SELECT id FROM organisation WHERE seed_key = %s", (HOTLINE_SEED_KEY,)).fetchone()
        organisations = [row[0] for row in conn.execute("SELECT id FROM organisation WHERE demo ORDER BY id")]
        origins = conn.execute(
            "SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = ANY(%s) ORDER BY code", (list(CITIES),)
        ).fetchall()
        assert hotline is not None
        assert conn.execute("SELECT count(*) FROM opening_calendar").fetchone() > (20,)
    yield World(url=url, hotline=hotline[0], organisations=organisations, origins=[(x, y) for x, y in origins])
    cluster.drop_database(name)


@pytest.fixture
async def connections(world: World) -> AsyncIterator[tuple[AsyncConnection, AsyncConnection]]:
    """Two connections as the schema owner, each in a transaction that is rolled back."""
    pair = (
        await psycopg.AsyncConnection.connect(plain(world.url)),
        await psycopg.AsyncConnection.connect(plain(world.url)),
    )
    try:
        yield pair
    finally:
        for conn in pair:
            await conn.rollback()
            await conn.close()


def _combination(rng: random.Random, world: World) -> tuple[search.Query, object]:
    viewer = rng.choice(
        (
            Principal("s-1", Role.specialist, organisation_id=world.hotline, issuer="test"),
            Principal("p-1", Role.partner, organisation_id=rng.choice(world.organisations)),
            Principal("d-1", Role.department, collectivite_code="75C"),
            Principal("a-1", Role.admin),
        )
    )
    lon, lat = rng.choice(world.origins)
    lon, lat = lon + rng.uniform(-0.05, 0.05), lat + rng.uniform(-0.05, 0.05)
    now = hours_cases.instant(rng)
    open_at = None
    if rng.random() < 0.5:
        open_at = now if rng.random() < 0.5 else hours_cases.instant(rng)
    specialisms = tuple(sorted(rng.sample(sorted(SLUGS - {"crip"}), rng.choice((0, 0, 1, 2)))))
    filters = search.Filters(
        specialisms=specialisms,
        match_all=rng.random() < 0.3,
        audience=rng.choice((None, None, "minor")),
        language=rng.choice((None, None, None, "fr", "ro")),
        open_at=open_at,
        available=rng.random() < 0.2,
        collective=rng.choice((None, None, None, "ensemble-contre-la-traite")),
    )
    bbox = None
    if rng.random() < 0.15:
        bbox = search.BBox(lon - 0.2, lat - 0.2, lon + 0.2, lat + 0.2)
    query = search.Query(
        viewer=viewer,
        origin=None if bbox else search.Point(lon=lon, lat=lat),
        bbox=bbox,
        radius_m=rng.choice((5_000, 30_000, 100_000)),
        include_covering=rng.random() < 0.8,
        filters=filters,
        limit=rng.choice((5, 10, 20)),
    )
    return query, now


async def _pages(conn: AsyncConnection, combinations: list[tuple[search.Query, object]]) -> list[object]:
    pages: list[object] = []
    for n, (query, now) in enumerate(combinations):
        first = await search.search(conn, query, now=now)  # type: ignore[arg-type]
        pages.append(first)
        if first.last_key is not None and n % 10 == 0:
            after = replace(query, after=first.last_key)
            pages.append(await search.search(conn, after, now=now))  # type: ignore[arg-type]
    return pages


async def test_pages_equal_the_reference(world: World, connections: tuple[AsyncConnection, AsyncConnection]) -> None:
    rng = random.Random(119)
    combinations = [_combination(rng, world) for _ in range(COMBINATIONS)]
    with_calendars, without = connections
    # In `without`'s own transaction only, the statement as it was before the projections: every search
    # asks the hours functions (no calendars), and scans every current location and its services live
    # (a temporary view shadows the search points: pg_temp comes first in the search path). Meanwhile
    # `with_calendars` reads both projections. The two run side by side.
    await without.execute("DELETE FROM opening_calendar")
    await without.execute(
        """CREATE TEMPORARY VIEW search_point AS
           SELECT s.id AS service_id, l.id AS location_id, l.public_point::geography AS geog, s.specialisms
             FROM location l JOIN service s ON s.location_id = l.id WHERE l.archived_at IS NULL"""
    )
    shadowed = await (
        await without.execute(
            "SELECT relnamespace = pg_my_temp_schema() FROM pg_class WHERE oid = 'search_point'::regclass"
        )
    ).fetchone()
    assert shadowed == (True,)
    projected, reference = await asyncio.gather(_pages(with_calendars, combinations), _pages(without, combinations))
    assert len(projected) == len(reference) > COMBINATIONS
    different = [n for n, (a, b) in enumerate(zip(projected, reference, strict=True)) if a != b]
    assert different == []
    # Not vacuous: the pages show open and closed services, openings to come, and empty pages.
    features = [json.loads(f)["properties"] for page in projected for f in page.features]  # type: ignore[attr-defined]
    assert len(features) > 3 * COMBINATIONS
    assert {f["open_now"] for f in features} == {True, False, None}
    assert sum(f["next_opening"] is not None for f in features) > 500
    assert any(page.empty_reason for page in projected)  # type: ignore[attr-defined]


def test_the_window_reaches_the_cases() -> None:
    start, days = hours_cases.WINDOW
    assert all(start < landmark < start + timedelta(days=days - 17) for landmark in hours_cases.LANDMARKS)
