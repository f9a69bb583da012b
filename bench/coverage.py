"""Benchmark of the national coverage statistic on the 1,000,000-service directory of bench/search.py:
the statistic as served (read from the precomputed `commune_coverage`) beside the same answer computed
live from the raw tables (the statement served before), in the same run; and what keeping the table
costs: a full rebuild, and a listing write that moves coverage. All in one transaction, rolled back.

Prints figures, asserts nothing but that both answers agree. Run bench/search.py once first: it
generates the directory (`maillage_bench_search`), which this script reuses.

Usage: .venv/bin/python bench/coverage.py [--runs 10]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from harness import PGOPTIONS, bench_database
from psycopg import AsyncConnection

from api.settings import Settings
from directory import stats

DATABASE = "maillage_bench_search"
SPECIALISMS = ["emergency-shelter", "legal-support", "psychotrauma-care"]
WITHIN_KM = 20

# The statement served before the table: every commune × specialism probed live.
RAW = """
    WITH covered AS (
        SELECT c.code, c.collectivite_code, coalesce(c.population, 0) AS population, sp.specialism,
               EXISTS (SELECT 1 FROM service s JOIN location l ON l.id = s.location_id
                        WHERE s.specialisms @> ARRAY[sp.specialism]::varchar[] AND s.archived_at IS NULL
                          AND s.status <> 'suspended' AND NOT s.demo AND l.archived_at IS NULL
                          AND ST_DWithin(l.public_point::geography, c.point::geography, %(metres)s, false)) AS covered
          FROM commune c CROSS JOIN unnest(%(specialisms)s::text[]) sp(specialism)
         WHERE c.point IS NOT NULL
    )
    SELECT collectivite_code, specialism, sum(population)::bigint, sum(population) FILTER (WHERE covered)::bigint
      FROM covered GROUP BY 1, 2 ORDER BY 1, 2"""


async def served(conn: AsyncConnection) -> list[tuple[str, str, int, int]]:
    answer = await stats.coverage(
        conn,
        collectivites=None,
        specialisms=SPECIALISMS,
        within_km=WITHIN_KM,
        min_population=1000,
        with_geometry=False,
    )
    return [(i["collectivite"], i["specialism"], i["population"], i["covered_population"]) for i in answer["items"]]


async def raw(conn: AsyncConnection) -> list[tuple[str, str, int, int]]:
    rows = await (await conn.execute(RAW, {"metres": WITHIN_KM * 1000, "specialisms": SPECIALISMS})).fetchall()
    return [(r[0], r[1], int(r[2] or 0), int(r[3] or 0)) for r in rows]


async def timed(work, conn: AsyncConnection, runs: int) -> tuple[list[float], object]:  # type: ignore[no-untyped-def]
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = await work(conn)
        times.append((time.perf_counter() - started) * 1000)
    return times, result


async def measure(url: str, runs: int) -> None:
    """Everything in one transaction, rolled back: the bench directory's services are flagged demo
    (coverage leaves demo listings out), so they are made to count here only."""
    async with await AsyncConnection.connect(url, options=PGOPTIONS) as conn:
        await conn.execute("SET LOCAL session_replication_role = replica")  # no triggers for the bulk flag
        await conn.execute("UPDATE service SET demo = false WHERE demo")
        await conn.execute("SET LOCAL session_replication_role = origin")
        # Statistics that know it (ANALYZE sees the transaction's own rows): with the flag's old figures
        # the planner expects no counting service and gives the index walk of a coverage write a sort of
        # 1M rows instead, 2-7 s a move where production takes milliseconds.
        await conn.execute("ANALYZE service")
        services = (await (await conn.execute("SELECT count(*) FROM service WHERE archived_at IS NULL")).fetchone())[0]  # type: ignore[index]
        started = time.perf_counter()
        slugs = [r[0] for r in await (await conn.execute("SELECT slug FROM specialism ORDER BY slug")).fetchall()]
        written = 0
        for slug in slugs:
            written += (await (await conn.execute("SELECT coverage_compute(%s, NULL)", (slug,))).fetchone())[0]  # type: ignore[index]
        print(
            f"rebuild: {written:,} commune × specialism distances over {services:,} services in "
            f"{time.perf_counter() - started:.1f} s"
        )
        await served(conn)  # warm
        served_ms, served_rows = await timed(served, conn, runs)
        raw_ms, raw_rows = await timed(raw, conn, max(2, runs // 5))
        print(
            f"national coverage, {len(SPECIALISMS)} specialisms, {WITHIN_KM} km, {services:,} services "
            f"({len(served_rows)} collectivité × specialism cells)"  # type: ignore[arg-type]
        )
        figures = (
            ("served (commune_coverage)", served_ms, f"{runs} runs"),
            ("raw (live probes)", raw_ms, f"{len(raw_ms)} runs, no timeout"),
        )
        for label, times, note in figures:
            print(f"  {label:27} p50 {statistics.median(times):9.1f} ms   max {max(times):9.1f} ms   ({note})")
        print(f"  answers equal: {served_rows == raw_rows}; target: served p50 < 2,000 ms, never a 503 (5 s timeout)")
        rows = await (
            await conn.execute(
                """SELECT s.location_id FROM service s JOIN location l ON l.id = s.location_id
                    WHERE s.status = 'active' AND l.visibility = 'public' ORDER BY s.id LIMIT 20"""
            )
        ).fetchall()
        moves = []
        for (location_id,) in rows:
            started = time.perf_counter()
            await conn.execute("UPDATE location SET point = ST_Translate(point, 0.01, 0) WHERE id = %s", (location_id,))
            moves.append((time.perf_counter() - started) * 1000)
        print(
            f"a location moved ~1 km (coverage kept in the same transaction): p50 {statistics.median(moves):.1f} ms, "
            f"max {max(moves):.1f} ms over {len(moves)} moves"
        )
        await conn.rollback()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    url = bench_database(Settings(), DATABASE)
    asyncio.run(measure(url, args.runs))


if __name__ == "__main__":
    main()
