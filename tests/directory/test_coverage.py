"""The precomputed coverage stays exact through listing writes: after services are added, moved,
narrowed, suspended, archived or hidden behind a safe house's commune, every stored distance equals
the brute-force nearest (within 100 km; beyond, never less, or none), and the coverage statistic read from the
table equals the statistic probed live from the raw tables, cell for cell."""

from __future__ import annotations

import random

import httpx
import psycopg
import pytest
from psycopg import AsyncConnection

from directory import stats
from directory.taxonomy import SLUGS

# Lyon and the Rhône, and La Réunion: ~290 communes.
REGION = ["69M", "69D", "974D"]
SPECIALISMS = sorted(SLUGS - {"crip"})[:6]

# The statistic as it was computed before the table (sphere distance): the reference.
REFERENCE = """
    WITH covered AS (
        SELECT c.code, c.name, c.collectivite_code, coalesce(c.population, 0) AS population, sp.specialism,
               EXISTS (SELECT 1 FROM service s JOIN location l ON l.id = s.location_id
                        WHERE s.specialisms @> ARRAY[sp.specialism]::varchar[] AND s.archived_at IS NULL
                          AND s.status <> 'suspended' AND NOT s.demo AND l.archived_at IS NULL
                          AND ST_DWithin(l.public_point::geography, c.point::geography, %(metres)s, false)) AS covered
          FROM commune c CROSS JOIN unnest(%(specialisms)s::text[]) sp(specialism)
         WHERE c.point IS NOT NULL AND c.collectivite_code = ANY(%(collectivites)s)
    )
    SELECT collectivite_code, specialism, sum(population)::bigint, sum(population) FILTER (WHERE covered)::bigint,
           coalesce(array_agg(code ORDER BY code) FILTER (WHERE NOT covered AND population >= 1000), '{}')
      FROM covered GROUP BY 1, 2 ORDER BY 1, 2"""


async def _random_communes(owner: AsyncConnection, rng: random.Random, count: int) -> list[str]:
    rows = await (
        await owner.execute(
            "SELECT code FROM commune WHERE collectivite_code = ANY(%s) AND point IS NOT NULL ORDER BY code",
            (REGION,),
        )
    ).fetchall()
    return [row[0] for row in rng.sample(rows, count)]


async def _add_services(owner: AsyncConnection, rng: random.Random, count: int) -> list[tuple[object, object]]:
    """(service, location) pairs at random communes' points, jittered, with 1-2 random specialisms."""
    made = []
    for code in await _random_communes(owner, rng, count):
        row = await (
            await owner.execute(
                """WITH o AS (INSERT INTO organisation (id, name, kind, seat_commune_code, verification)
                              VALUES (gen_random_uuid(), 'Couverture', 'association', %(code)s, 'unverified')
                              RETURNING id),
                        l AS (INSERT INTO location (id, organisation_id, name, commune_code, point, visibility)
                              SELECT gen_random_uuid(), o.id, 'Lieu', %(code)s,
                                     ST_Translate(c.point, %(dx)s, %(dy)s), 'public'
                                FROM o, commune c WHERE c.code = %(code)s RETURNING id, organisation_id)
                   INSERT INTO service (id, organisation_id, location_id, name, specialisms)
                   SELECT gen_random_uuid(), l.organisation_id, l.id, 'Service', %(specialisms)s::varchar[] FROM l
                   RETURNING id, location_id""",
                {
                    "code": code,
                    "dx": rng.uniform(-0.005, 0.005),
                    "dy": rng.uniform(-0.005, 0.005),
                    "specialisms": rng.sample(SPECIALISMS, rng.choice((1, 2))),
                },
            )
        ).fetchone()
        assert row is not None
        made.append((row[0], row[1]))
    return made


async def _assert_exact(owner: AsyncConnection) -> int:
    """Stored distances against the brute-force nearest; returns how many pairs a service reaches."""
    rows = await (
        await owner.execute(
            """SELECT c.code, sp, cc.metres, min(ST_Distance(l.public_point::geography, c.point::geography, false))
                 FROM commune c CROSS JOIN unnest(%s::text[]) sp
                 LEFT JOIN commune_coverage cc ON cc.commune_code = c.code AND cc.specialism = sp
                 LEFT JOIN (service s JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL)
                        ON s.specialisms @> ARRAY[sp]::varchar[] AND s.archived_at IS NULL
                       AND s.status <> 'suspended' AND NOT s.demo
                WHERE c.collectivite_code = ANY(%s) AND c.point IS NOT NULL
                GROUP BY c.code, sp, cc.metres""",
            (SPECIALISMS, REGION),
        )
    ).fetchall()
    wrong = [
        r
        for r in rows
        if (r[3] is None and r[2] is not None)
        or (r[3] is not None and r[3] <= 100_000 and (r[2] is None or abs(r[2] - r[3]) > 0.01))
        or (r[3] is not None and r[3] > 100_000 and r[2] is not None and r[2] < r[3] - 0.01)
    ]
    assert wrong[:5] == []
    return sum(r[3] is not None and r[3] <= 100_000 for r in rows)


async def _assert_statistic_equals_reference(owner: AsyncConnection) -> None:
    for within_km in (5, 50):
        answer = await stats.coverage(
            owner,
            collectivites=REGION,
            specialisms=SPECIALISMS,
            within_km=within_km,
            min_population=1000,
            with_geometry=False,
        )
        reference = await (
            await owner.execute(
                REFERENCE, {"metres": within_km * 1000, "specialisms": SPECIALISMS, "collectivites": REGION}
            )
        ).fetchall()
        got = [
            (
                i["collectivite"],
                i["specialism"],
                i["population"],
                i["covered_population"],
                sorted(c["code"] for c in i["uncovered_communes"]),
            )
            for i in answer["items"]
        ]
        assert got == [(r[0], r[1], r[2], r[3] or 0, list(r[4])) for r in reference]


@pytest.mark.parametrize("common", ["1000", "1"], ids=["rare-specialisms-gathered", "common-specialisms-walked"])
async def test_coverage_stays_exact_through_writes(owner: AsyncConnection, common: str) -> None:
    await owner.execute("SELECT set_config('maillage.coverage_common', %s, true)", (common,))
    rng = random.Random(119)
    made = await _add_services(owner, rng, 25)
    reached = await _assert_exact(owner)
    assert reached > 300  # not vacuous: the new services cover much of the region
    await _assert_statistic_equals_reference(owner)
    moved, narrowed, suspended, archived, hidden, closed, demo = made[:7]
    # Move a location 60 km east; drop a specialism; suspend; archive a service; make a location a
    # safe house (its public point becomes its commune's); archive a location; flag one as demo.
    await owner.execute("UPDATE location SET point = ST_Translate(point, 0.8, 0) WHERE id = %s", (moved[1],))
    await owner.execute(
        "UPDATE service SET specialisms = specialisms[1:1] || ARRAY['crip']::varchar[] WHERE id = %s", (narrowed[0],)
    )
    await owner.execute("UPDATE service SET status = 'suspended' WHERE id = %s", (suspended[0],))
    await owner.execute("UPDATE service SET archived_at = now() WHERE id = %s", (archived[0],))
    await owner.execute(
        "UPDATE location SET visibility = 'confidential', front_door_phone = '+33 1 99 00 00 00' WHERE id = %s",
        (hidden[1],),
    )
    await owner.execute("UPDATE location SET archived_at = now() WHERE id = %s", (closed[1],))
    await owner.execute("UPDATE service SET demo = true WHERE id = %s", (demo[0],))
    await _assert_exact(owner)
    await _assert_statistic_equals_reference(owner)
    # The suspended service comes back: it is the nearest again where it was.
    await owner.execute("UPDATE service SET status = 'active' WHERE id = %s", (suspended[0],))
    await _assert_exact(owner)


async def test_missing_rows_are_probed_live(owner: AsyncConnection) -> None:
    await _add_services(owner, random.Random(7), 10)
    await owner.execute("DELETE FROM commune_coverage WHERE commune_code LIKE '69%%'")
    await _assert_statistic_equals_reference(owner)


async def test_national_coverage_answers(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    response = await client.get(
        "/v1/stats/coverage", params={"specialism": ["crip", "legal-support"]}, headers=auth("admin")
    )
    assert response.status_code == 200, response.text
    items = response.json()["items"]
    placed = await (
        await reader.execute("SELECT count(DISTINCT collectivite_code) FROM commune WHERE point IS NOT NULL")
    ).fetchone()
    assert placed is not None
    assert len(items) == 2 * placed[0]  # every collectivité with placed communes × both specialisms
    crip = [i for i in items if i["specialism"] == "crip"]
    assert all(i["covered_share"] is not None and i["covered_share"] > 0 for i in crip if i["population"] > 0)


@pytest.mark.parametrize(
    "statement",
    [
        "SELECT coverage_compute('legal-support', NULL)",
        "SELECT coverage_services_changed(ARRAY[]::uuid[])",
        "DELETE FROM commune_coverage",
    ],
)
async def test_the_application_role_only_reads_coverage(reader: AsyncConnection, statement: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        await reader.execute(statement)


async def test_a_bulk_load_is_judged_as_a_whole(owner: AsyncConnection) -> None:
    """300 services in one statement (an import): coverage is recomputed once, and exact."""
    await owner.execute(
        """WITH o AS (INSERT INTO organisation (id, name, kind, seat_commune_code, verification)
                      VALUES (gen_random_uuid(), 'Import', 'association', '69123', 'unverified') RETURNING id),
                l AS (INSERT INTO location (id, organisation_id, name, commune_code, point, visibility)
                      SELECT gen_random_uuid(), o.id, 'Lieu ' || c.code, c.code, c.point, 'public'
                        FROM o, (SELECT code, point FROM commune WHERE collectivite_code = ANY(%s)
                                    AND point IS NOT NULL ORDER BY code LIMIT 300) c
                      RETURNING id, organisation_id, commune_code)
           INSERT INTO service (id, organisation_id, location_id, name, specialisms)
           SELECT gen_random_uuid(), l.organisation_id, l.id, 'Importé',
                  ARRAY[(%s::text[])[1 + abs(hashtext(l.commune_code)) %% 6]]::varchar[] FROM l""",
        (REGION, SPECIALISMS),
    )
    assert await _assert_exact(owner) > 1000
