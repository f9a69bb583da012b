"""The search points stay equal to their definition through every listing write that can change them:
a service added, moved to another location, narrowed to other specialisms, suspended and lifted,
archived; a location moved, made a safe house, archived; an organisation deactivated and reactivated;
a service deleted. The definition is written here from the listing tables, not read from the trigger."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from psycopg import AsyncConnection

from directory.search_points import rebuild
from tests.database import plain

# Every service a search may return that has a place, at its location's public point.
DEFINITION = """
    SELECT s.id, l.id, ST_AsText(l.public_point), s.specialisms::text[]
      FROM service s JOIN location l ON l.id = s.location_id JOIN organisation o ON o.id = s.organisation_id
     WHERE s.archived_at IS NULL AND s.status <> 'suspended' AND o.deactivated_at IS NULL
       AND l.archived_at IS NULL AND l.public_point IS NOT NULL
     ORDER BY 1"""
STORED = "SELECT service_id, location_id, ST_AsText(geog::geometry), specialisms::text[] FROM search_point ORDER BY 1"


async def _rows(conn: AsyncConnection, sql: str) -> list[tuple[object, ...]]:
    return await (await conn.execute(sql)).fetchall()


async def _assert_equal(owner: AsyncConnection) -> list[tuple[object, ...]]:
    stored = await _rows(owner, STORED)
    assert stored == await _rows(owner, DEFINITION)
    return stored


async def _new_partner(owner: AsyncConnection, specialisms: list[str]) -> tuple[object, object, object]:
    """(organisation, location, service) in Lyon, public."""
    row = await (
        await owner.execute(
            """WITH o AS (INSERT INTO organisation (id, name, kind, seat_commune_code, verification)
                          VALUES (gen_random_uuid(), 'Points', 'association', '69123', 'unverified') RETURNING id),
                    l AS (INSERT INTO location (id, organisation_id, name, commune_code, point, visibility)
                          SELECT gen_random_uuid(), o.id, 'Lieu', '69123', ST_SetSRID(ST_MakePoint(4.84, 45.76), 4326),
                                 'public' FROM o RETURNING id, organisation_id),
                    s AS (INSERT INTO service (id, organisation_id, location_id, name, specialisms)
                          SELECT gen_random_uuid(), l.organisation_id, l.id, 'Service', %s::varchar[] FROM l
                          RETURNING id, organisation_id, location_id)
               SELECT organisation_id, location_id, id FROM s""",
            (specialisms,),
        )
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


async def test_search_points_follow_every_write(owner: AsyncConnection) -> None:
    before = len(await _assert_equal(owner))
    assert before > 0  # the test database's listings are there from the start
    _, location, service = await _new_partner(owner, ["legal-support"])
    other_org, other_location, other_service = await _new_partner(owner, ["outreach", "emergency-shelter"])
    stored = await _assert_equal(owner)
    assert len(stored) == before + 2

    def point_of(rows: list[tuple[object, ...]], service_id: object) -> object:
        return next((row[2] for row in rows if row[0] == service_id), None)

    writes = [
        ("UPDATE location SET point = ST_Translate(point, 0.3, 0) WHERE id = %s", location),
        ("UPDATE service SET specialisms = ARRAY['psychotrauma-care']::varchar[] WHERE id = %s", service),
        ("UPDATE service SET location_id = %s WHERE id = %s", (other_location, service)),
        ("UPDATE service SET status = 'suspended' WHERE id = %s", service),
        ("UPDATE service SET status = 'active' WHERE id = %s", service),
        (
            "UPDATE location SET visibility = 'confidential', front_door_phone = '+33 1 99 00 00 00' WHERE id = %s",
            other_location,
        ),
        ("UPDATE organisation SET deactivated_at = now() WHERE id = %s", other_org),
        ("UPDATE organisation SET deactivated_at = NULL WHERE id = %s", other_org),
        ("UPDATE location SET archived_at = now() WHERE id = %s", other_location),
        ("UPDATE service SET location_id = %s, archived_at = NULL WHERE id = %s", (location, other_service)),
        ("UPDATE service SET archived_at = now() WHERE id = %s", service),
        ("DELETE FROM service WHERE id = %s", other_service),
    ]
    seen: set[int] = set()
    for statement, values in writes:
        await owner.execute(statement, values if isinstance(values, tuple) else (values,))
        stored = await _assert_equal(owner)
        seen.add(len(stored))
        if "visibility = 'confidential'" in statement:
            # A safe house is placed at its commune's point, never its own.
            commune = await (
                await owner.execute("SELECT ST_AsText(point) FROM commune WHERE code = '69123'")
            ).fetchone()
            assert commune is not None
            assert point_of(stored, other_service) == commune[0]
    assert seen == {before, before + 1, before + 2}  # rows left and came back along the way


async def test_a_rebuild_gives_the_same_rows(owner: AsyncConnection) -> None:
    await _new_partner(owner, ["legal-support"])
    stored = await _assert_equal(owner)
    await owner.execute("DELETE FROM search_point")
    assert await _rows(owner, STORED) == []
    count = await (await owner.execute("SELECT search_points_rebuild()")).fetchone()
    assert count == (len(stored),)
    assert await _rows(owner, STORED) == stored


def test_the_rebuild_command_rewrites_what_the_definition_says(owner_url: str) -> None:
    """What `maillage search rebuild` runs, committed: the same rows as before (nothing else changed)."""
    with psycopg.connect(plain(owner_url)) as conn:
        before = conn.execute(STORED).fetchall()
        assert before == conn.execute(DEFINITION).fetchall()
        conn.commit()
        assert rebuild(conn) == len(before) > 0
        assert conn.execute(STORED).fetchall() == before


async def test_a_service_added_while_its_location_moves_gets_the_new_point(owner_url: str) -> None:
    """Two writers, committed: a service is added at a location while another transaction moves it. The
    move waits for the addition (the refresh holds its location under a share lock), then refreshes the
    new service too: its point is where the location is, not where it was."""
    first = await psycopg.AsyncConnection.connect(plain(owner_url))
    second = await psycopg.AsyncConnection.connect(plain(owner_url))
    organisation = None
    try:
        organisation, location, _ = await _new_partner(first, ["outreach"])
        await first.commit()
        added = await (
            await first.execute(
                """INSERT INTO service (id, organisation_id, location_id, name, specialisms, demo)
                   VALUES (gen_random_uuid(), %s, %s, 'Ajouté', ARRAY['legal-support'], true) RETURNING id""",
                (organisation, location),
            )
        ).fetchone()
        assert added is not None
        move = asyncio.create_task(
            second.execute("UPDATE location SET point = ST_Translate(point, 0.3, 0) WHERE id = %s", (location,))
        )
        await asyncio.sleep(0.3)
        assert not move.done()  # the move waits for the addition's share lock
        await first.commit()
        await asyncio.wait_for(move, timeout=30)
        await second.commit()
        stored = await (
            await first.execute(
                """SELECT ST_AsText(p.geog::geometry), ST_AsText(l.public_point)
                     FROM search_point p JOIN location l ON l.id = p.location_id WHERE p.service_id = %s""",
                (added[0],),
            )
        ).fetchone()
        assert stored is not None
        assert stored[0] == stored[1]
    finally:
        await second.rollback()
        await first.rollback()
        if organisation is not None:
            for table in ("service", "location", "organisation"):
                column = "id" if table == "organisation" else "organisation_id"
                await first.execute(f"DELETE FROM {table} WHERE {column} = %s", (organisation,))  # noqa: S608
            await first.commit()
        await first.close()
        await second.close()


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT search_points_rebuild()",
        "SELECT search_points_refresh(ARRAY[]::uuid[])",
        "DELETE FROM search_point",
        "INSERT INTO search_point SELECT * FROM search_point LIMIT 1",
    ],
)
async def test_the_application_role_only_reads_search_points(reader: AsyncConnection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await reader.execute(statement)
