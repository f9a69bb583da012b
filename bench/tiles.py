"""Benchmark of the territories' map tiles (GET /v1/tiles/{z}/{x}/{y}.mvt): a cold tile (built by PostGIS)
beside a warm one (from the process's cache), and each tile's size and features.

Prints figures, asserts nothing, ends with one line of JSON. The API runs in this process (the app
driven over ASGI by httpx, its real pools, one request at a time), on a database of its own on the local
cluster (`maillage_bench_tiles`: migrated, territories loaded as `maillage seed` loads them), so that
the cache can be emptied between cold requests. "cold" is the median over --runs requests each made
after emptying the cache (PostgreSQL's own buffers are warm after the first); "first" is the very first
request for the tile in this run; "warm" the median over --runs requests answered from the cache.

Usage: .venv/bin/python bench/tiles.py [--runs 9]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import time

import httpx
import mapbox_vector_tile
import psycopg
from harness import bench_database

from api.app import create_app
from api.logs import configure_logging
from api.settings import Settings
from directory.access import Role
from directory.seeding import seed_hotline
from geo import tiles
from geo.loading import load_territories

DATABASE = "maillage_bench_tiles"
# (label, z, x, y): the world, France, Île-de-France, Paris and its suburbs, the centre of Paris.
TILES = (
    ("world z0", 0, 0, 0),
    ("France z5", 5, 16, 11),
    ("France (north) z6", 6, 32, 22),
    ("Paris region z8", 8, 129, 88),
    ("Paris z10", 10, 518, 352),
    ("Paris centre z12", 12, 2074, 1409),
)


async def measure(url: str, settings: Settings, runs: int) -> list[dict[str, object]]:
    app = create_app(settings.model_copy(update={"database_url": url}))
    configure_logging(json=False, level=logging.WARNING)  # no access-log line per request
    token = app.state.tokens.issue(subject="bench", role=Role.specialist)
    headers = {"Authorization": f"Bearer {token}"}
    results = []
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url=settings.public_base_url) as client:

            async def timed(path: str) -> tuple[float, bytes]:
                started = time.perf_counter()
                response = await client.get(path, headers=headers)
                elapsed = (time.perf_counter() - started) * 1000
                response.raise_for_status()
                return elapsed, response.content

            for label, z, x, y in TILES:
                path = f"/v1/tiles/{z}/{x}/{y}.mvt"
                tiles.CACHE.clear()
                first, body = await timed(path)
                cold = []
                for _ in range(runs):
                    tiles.CACHE.clear()
                    cold.append((await timed(path))[0])
                await timed(path)
                warm = [(await timed(path))[0] for _ in range(runs)]
                layers = mapbox_vector_tile.decode(body) if body else {}
                results.append(
                    {
                        "tile": f"{z}/{x}/{y}",
                        "label": label,
                        "bytes": len(body),
                        "features": {name: len(layer["features"]) for name, layer in layers.items()},
                        "first_ms": round(first, 1),
                        "cold_ms": round(statistics.median(cold), 1),
                        "warm_ms": round(statistics.median(warm), 2),
                    }
                )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=9)
    args = parser.parse_args()
    settings = Settings()
    plain = bench_database(settings, DATABASE)
    with psycopg.connect(plain) as conn:
        load_territories(conn)
        seed_hotline(conn)  # the specialist's token acts for the 119 unit
    url = plain.replace("postgresql://", "postgresql+psycopg://", 1)
    results = asyncio.run(measure(url, settings, args.runs))
    print(f"\nmap tiles — one request at a time, in process, database '{DATABASE}', median of {args.runs}")
    print(f"{'tile':28}{'bytes':>9}{'first':>10}{'cold':>10}{'warm':>10}  features")
    for r in results:
        name = f"{r['label']} ({r['tile']})"
        print(
            f"{name:28}{r['bytes']:>9,}{r['first_ms']:>7.0f} ms{r['cold_ms']:>7.0f} ms{r['warm_ms']:>7.2f} ms  "
            f"{r['features']}"
        )
    print(json.dumps({"tiles": results}))


if __name__ == "__main__":
    main()
