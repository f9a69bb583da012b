"""Benchmark of service search over 1,000,000 services: HTTP through the API against the bare ceiling
of the same work (the least PostgreSQL can do to answer it), beside the API's own statements as raw
SQL, and beside tipg (a generic OGC API Features server) for the bbox listing.

Prints figures and verdicts against the targets, asserts nothing, and ends with one line of JSON.
Everything runs in the same run, interleaved search by search, on the same database and the same
machine, with 8 concurrent connections over the same random origins (metropolitan commune points
jittered by up to ~1 km, each with a random specialism):

- the database `maillage_bench_search` of its own on the local cluster: migrated, reference data
  loaded as `maillage seed` does (no demo data), plus synthetic services (flagged demo, seed_key
  'bench:…') generated once in SQL and reused by later runs;
- three searches: the 20 nearest services with one specialism (default radius 30 km, services whose
  area covers the origin included); a listing of 20 services in a 0.1° box; and the nearest search
  within 100 km with and without `away_from` a point 60 km from the origin (random azimuth per
  origin, fixed seed) with `min_distance_km=50`;
- bare ceilings: pgbench on a bare table (id, public point, specialisms, name of every current
  service, a GiST index, nothing else) answering the first two searches as one GeoJSON
  FeatureCollection each — no confidentiality, no joins, no hours: what a page costs at the least;
- raw SQL: pgbench running the very statement directory/search.py sends (captured from
  search.search for the query the route builds), one per transaction, its per-origin parameters read
  from the origin table, the others bound as pgbench variables (checked to answer the API statement's
  page at the first origin);
- HTTP: `maillage serve` (one uvicorn worker, production settings) driven by wrk (one thread), the
  server's CPU time (all its threads, from /proc) read around each measured run: the CPU spent
  outside PostgreSQL per request, beside that of a cheap authenticated GET /v1/specialisms;
- the same bbox listing through Maillage's own OGC API – Features (/ogc), beside tipg's;
- tipg 1.6.1 (its own virtualenv under var/bench/, one uvicorn worker) serving the bbox listing of a
  view over the same tables, driven by the same wrk settings.

Usage: .venv/bin/python bench/search.py [--seconds 15] [--services 1000000] [--origins 5000] [--explain]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from unittest import mock
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import httpx
import psycopg
from harness import bench_database, free_port, run_pgbench
from psycopg.adapt import PyFormat, Transformer
from starlette.datastructures import QueryParams

from api.cluster import apt_install
from api.routes.services import search_query
from api.settings import REPO_ROOT, Settings
from directory import search
from directory.access import Principal, Role
from directory.areas import REFRESH, rebuild_params
from directory.seeding import HOTLINE_SEED_KEY, seed_collective, seed_crips, seed_hotline, seed_specialisms
from directory.taxonomy import SLUGS
from geo.calendars import load_public_holidays
from geo.loading import load_territories

CONNECTIONS = 8
WARM_UP_SECONDS = 3
DATABASE = "maillage_bench_search"
KEY = "bench:"  # seed_key prefix of every generated row
ORGANISATIONS = 10_000
BBOX_HALF_DEGREES = 0.05
LIMIT = 20
# Éloignement: the place of danger lies AWAY_KM from the origin, services must lie AWAY_MIN_KM from it,
# within AWAY_RADIUS_KM of the origin — the search with and without away_from use that radius.
AWAY_KM = 60
AWAY_MIN_KM = 50
AWAY_RADIUS_KM = 100
# The API's searches are made as a specialist, acting for the 119 unit as every specialist does (set in
# main() once the unit's organisation is seeded): the statement measured is the one they run.
VIEWER = Principal(subject="bench", role=Role.specialist)
# tipg and the same server stack as the API (requirements.lock), in a virtualenv of their own.
TIPG_PACKAGES = ("tipg==1.6.1", "uvicorn==0.54.0", "uvloop==0.23.0", "httptools==0.9.0")
TIPG_VIEW = "bench_tipg_service"
METROPOLITAN_COMMUNES = "SELECT {columns} FROM commune WHERE point IS NOT NULL AND departement_code NOT LIKE '97%'"
# Parameters of search.search that depend on the origin: pgbench reads them from row :i of bench_origin.
ORIGIN_PARAMETERS = ("lon", "lat", "specialisms", "min_lon", "min_lat", "max_lon", "max_lat", "away_lon", "away_lat")
OFFICE_HOURS = (
    '{"mode": "weekly", "weekly": {'
    + ", ".join(f'"{d}": [["09:00", "12:30"], ["13:30", "17:30"]]' for d in ("mon", "tue", "wed", "thu", "fri"))
    + "}}"
)

# The bare ceilings: the table and the two queries of issue 11, verbatim but for the table names. The
# least PostgreSQL can do to answer each search as one FeatureCollection — one GiST index, no joins,
# no confidentiality, no hours — so HTTP throughput divided by theirs says what the API's own work costs.
BARE = "bench_bare"
BARE_TABLE = (
    f"CREATE TABLE {BARE} AS SELECT s.id, l.public_point AS geom, s.specialisms, s.name"
    " FROM service s JOIN location l ON l.id = s.location_id WHERE s.archived_at IS NULL",
    f"CREATE INDEX ON {BARE} USING gist (geom)",
)
BARE_KNN = f"""SELECT json_build_object('type','FeatureCollection','features',
       json_agg(json_build_object('type','Feature', 'id',t.id,'geometry',ST_AsGeoJSON(t.geom,6)::json,
                                  'properties',json_build_object('name',t.name,'distance_m',t.d))))
  FROM (SELECT b.id, b.geom, b.name, ST_Distance(b.geom::geography, o.g::geography) AS d
          FROM (SELECT ST_SetSRID(ST_MakePoint(lon, lat), 4326) AS g, specialisms[1] AS sp
                  FROM bench_origin WHERE id = :i) o,
               LATERAL (SELECT * FROM {BARE} WHERE specialisms && ARRAY[o.sp]::varchar[]
                         ORDER BY geom <-> o.g LIMIT {LIMIT}) b) t"""
BARE_BBOX = f"""SELECT json_build_object('type','FeatureCollection','features',
       json_agg(json_build_object('type','Feature', 'id',t.id,'geometry',ST_AsGeoJSON(t.geom,6)::json,
                                  'properties',json_build_object('name',t.name))))
  FROM (SELECT b.id, b.geom, b.name FROM bench_origin o, LATERAL (SELECT * FROM {BARE}
          WHERE geom && ST_MakeEnvelope(o.min_lon, o.min_lat, o.max_lon, o.max_lat, 4326)
          ORDER BY id LIMIT {LIMIT}) b WHERE o.id = :i) t"""


def decimal(value: float) -> str:
    """A coordinate as the API's bbox and away_from patterns take it: plain digits, never str()'s
    exponent (1e-05 is a longitude metropolitan France has)."""
    return f"{value:.6f}".rstrip("0").rstrip(".")


def box(lon: float, lat: float) -> tuple[float, float, float, float]:
    """The bbox listing's box around an origin: 2 × BBOX_HALF_DEGREES each way."""
    return (
        round(lon - BBOX_HALF_DEGREES, 6),
        round(lat - BBOX_HALF_DEGREES, 6),
        round(lon + BBOX_HALF_DEGREES, 6),
        round(lat + BBOX_HALF_DEGREES, 6),
    )


@dataclass(frozen=True)
class Origin:
    id: int
    lon: float
    lat: float
    specialism: str
    # The place of danger of the away_from search: AWAY_KM from the origin, computed by PostGIS.
    away_lon: float
    away_lat: float

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return box(self.lon, self.lat)

    def tipg_path(self) -> str:
        return f"/collections/public.{TIPG_VIEW}/items?bbox={','.join(map(decimal, self.bbox))}&limit={LIMIT}"


# --- the bench database -------------------------------------------------------------------------


def prepare(settings: Settings, services: int) -> str:
    """The bench database, migrated and loaded like `maillage seed` (no demo data), plus `services`
    synthetic services, generated unless a previous run left exactly that many."""
    plain = bench_database(settings, DATABASE)
    with psycopg.connect(plain) as conn:
        load_territories(conn)
        load_public_holidays(conn)
        seed_specialisms(conn)
        row = conn.execute("SELECT count(*) FROM service WHERE seed_key LIKE %s", (f"{KEY}service:%",)).fetchone()
        existing = int(row[0]) if row else 0
        if existing not in (0, services):
            print(f"{existing:,} bench services in '{DATABASE}', {services:,} asked for: regenerating the directory")
            conn.execute("TRUNCATE service_area, service, location, organisation CASCADE")
            existing = 0
        seed_hotline(conn)  # specialists act for the 119 unit's organisation
        seed_crips(conn)
        seed_collective(conn, REPO_ROOT / "seeds")
        conn.commit()
        if existing:
            print(f"reusing {existing:,} bench services in '{DATABASE}' (generated by an earlier run)")
        else:
            generate(conn, services)
        if not existing or conn.execute("SELECT to_regclass(%s)", (BARE,)).fetchone() == (None,):
            build_bare(conn)
        conn.execute(
            f"""CREATE OR REPLACE VIEW {TIPG_VIEW} AS
                SELECT s.id, s.name, o.name AS organisation, o.kind AS organisation_kind, s.specialisms,
                       s.audiences, s.age_min, s.age_max, s.genders, s.languages, s.channels, s.phone, s.email,
                       s.website, s.status, s.capacity, s.last_verified_at, lc.code AS commune_code,
                       lc.name AS commune_name, l.public_point AS geom
                  FROM service s
                  JOIN organisation o ON o.id = s.organisation_id
                  JOIN location l ON l.id = s.location_id AND l.archived_at IS NULL
                  LEFT JOIN commune lc ON lc.code = l.commune_code
                 WHERE s.archived_at IS NULL AND s.status <> 'suspended' AND o.deactivated_at IS NULL"""
        )
    return plain


def generate(conn: psycopg.Connection, count: int) -> None:
    """`count` services in SQL (set-based, one transaction): organisations, locations at random
    metropolitan communes' points jittered by up to ~2 km (5 % confidential), 1-3 specialisms, mostly
    open 24/7 and recently verified; 1 % with their département as service area."""
    started = time.monotonic()
    slugs = "ARRAY[" + ", ".join(f"'{slug}'" for slug in sorted(SLUGS - {"crip"})) + "]"
    kinds = len(SLUGS) - 1
    conn.execute("SELECT setseed(0.119)")
    conn.execute(
        "CREATE TEMP TABLE bench_commune ON COMMIT DROP AS "
        + METROPOLITAN_COMMUNES.format(
            columns="(row_number() OVER (ORDER BY code))::int AS k, code, departement_code, point"
        )
    )
    conn.execute("ALTER TABLE bench_commune ADD PRIMARY KEY (k)")
    row = conn.execute("SELECT count(*) FROM bench_commune").fetchone()
    communes = int(row[0]) if row else 0
    conn.execute(
        f"""INSERT INTO organisation (id, name, kind, seat_commune_code, verification, demo, seed_key)
            SELECT gen_random_uuid(), '[Bench] Organisation ' || n,
                   (ARRAY['association', 'health', 'public_service'])[1 + mod(n, 3)],
                   c.code, 'unverified', true, '{KEY}organisation:' || n
              FROM generate_series(0, {ORGANISATIONS - 1}) n
              JOIN bench_commune c ON c.k = 1 + mod(n * 7919, {communes})"""
    )
    # ±0.025° of longitude and ±0.018° of latitude: up to ~2 km each way in metropolitan France.
    conn.execute(
        f"""CREATE TEMP TABLE bench_gen ON COMMIT DROP AS
            SELECT g.n, gen_random_uuid() AS location_id, gen_random_uuid() AS service_id,
                   o.id AS organisation_id, c.code AS commune_code, c.departement_code,
                   ST_SetSRID(ST_MakePoint(round((ST_X(c.point) + (random() - 0.5) * 0.05)::numeric, 6)::float8,
                                           round((ST_Y(c.point) + (random() - 0.5) * 0.036)::numeric, 6)::float8),
                              4326) AS point,
                   random() < 0.05 AS confidential
              FROM (SELECT n, 1 + floor(random() * {communes})::int AS k FROM generate_series(1, {count}) n) g
              JOIN bench_commune c ON c.k = g.k
              JOIN organisation o ON o.seed_key = '{KEY}organisation:' || mod(g.n, {ORGANISATIONS})"""
    )
    # The BEFORE INSERT row trigger sets public_point (INSERT … SELECT fires row triggers like COPY).
    conn.execute(
        f"""INSERT INTO location (id, organisation_id, address, commune_code, point, visibility, point_precision,
                                  front_door_phone, demo, seed_key)
            SELECT location_id, organisation_id, (1 + mod(n, 120)) || ' rue du Banc d''Essai', commune_code, point,
                   CASE WHEN confidential THEN 'confidential' ELSE 'public' END, 'exact',
                   CASE WHEN confidential THEN '+33 1 99 00 ' || to_char(mod(n, 100), 'FM00') || ' 00' END,
                   true, '{KEY}location:' || n
              FROM bench_gen"""
    )
    located = time.monotonic()
    conn.execute(
        f"""INSERT INTO service (id, organisation_id, location_id, name, description, specialisms, audiences,
                                 age_min, age_max, genders, languages, channels, phone, schedule, status,
                                 closed_from, closed_until, closure_message, capacity, capacity_places,
                                 capacity_as_of, last_verified_at, demo, seed_key)
            SELECT service_id, organisation_id, location_id,
                   '[Bench] ' || (ARRAY['Accueil de jour', 'Maison des adolescents', 'Équipe mobile',
                                        'Foyer d''urgence', 'Permanence juridique', 'Consultation psychotrauma'])
                                 [1 + mod(n, 6)] || ' ' || n,
                   CASE WHEN mod(n, 4) = 0 THEN 'Service synthétique du banc d''essai de la recherche.' END,
                   (ARRAY[slugs[1 + a], slugs[1 + mod(a + step, {kinds})], slugs[1 + mod(a + 2 * step, {kinds})]])
                       [1:how_many],
                   (ARRAY['{{minor}}', '{{minor,young_adult}}', '{{minor,entourage}}',
                          '{{minor,young_adult,entourage,professional}}'])[1 + mod(n, 4)]::varchar[],
                   CASE WHEN mod(n, 3) = 0 THEN 10 + mod(n, 5) END, CASE WHEN mod(n, 3) = 0 THEN 21 END,
                   CASE WHEN mod(n, 10) = 0 THEN '{{female}}' ELSE '{{}}' END::varchar[],
                   (ARRAY['{{fr}}', '{{fr,en}}', '{{fr,en,ar}}', '{{fr,ro}}'])[1 + mod(n, 4)]::varchar[],
                   (ARRAY['{{in_person}}', '{{in_person,phone}}', '{{phone,online}}', '{{in_person,outreach}}'])
                       [1 + mod(n / 4, 4)]::varchar[],
                   '+33 1 99 00 ' || to_char(mod(n, 100), 'FM00') || ' ' || to_char(mod(n / 100, 100), 'FM00'),
                   CASE WHEN r_schedule < 0.75 THEN '{{"mode": "always"}}'
                        WHEN r_schedule < 0.95 THEN '{OFFICE_HOURS}'
                        ELSE '{{"mode": "on_call"}}' END::jsonb,
                   CASE WHEN r_status < 0.01 THEN 'temporarily_closed' WHEN r_status < 0.015 THEN 'suspended'
                        ELSE 'active' END,
                   CASE WHEN r_status < 0.01 THEN now() - interval '2 days' END,
                   CASE WHEN r_status < 0.01 THEN now() + interval '10 days' END,
                   CASE WHEN r_status < 0.01 THEN 'Fermeture temporaire (banc d''essai).' END,
                   (ARRAY[NULL, NULL, 'available', 'limited', 'full', 'waitlist'])[1 + mod(n, 6)],
                   CASE WHEN mod(n, 6) >= 2 THEN mod(n, 12) END, CASE WHEN mod(n, 6) >= 2 THEN now() END,
                   CASE WHEN r_verified < 0.9 THEN now() - random() * interval '120 days'
                        ELSE now() - interval '200 days' - random() * interval '300 days' END,
                   true, '{KEY}service:' || n
              FROM (SELECT g.*, {slugs}::varchar[] AS slugs, floor(random() * {kinds})::int AS a,
                           1 + floor(random() * ({kinds} - 1))::int AS step, 1 + floor(random() * 3)::int AS how_many,
                           random() AS r_schedule, random() AS r_status, random() AS r_verified
                      FROM bench_gen g) x"""
    )
    listed = time.monotonic()
    conn.execute(
        """INSERT INTO service_area (id, service_id, departements)
           SELECT gen_random_uuid(), service_id, ARRAY[departement_code] FROM bench_gen WHERE mod(n, 100) = 0"""
    )
    area_ids = [row[0] for row in conn.execute("SELECT service_id FROM bench_gen WHERE mod(n, 100) = 0")]
    for statement in REFRESH:
        conn.execute(statement, rebuild_params(area_ids))
    conn.commit()
    refreshed = time.monotonic()
    with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as maintenance:
        maintenance.execute("VACUUM (ANALYZE) organisation, location, service, service_area")
    done = time.monotonic()
    row = conn.execute(
        "SELECT count(*) FILTER (WHERE visibility = 'confidential') FROM location WHERE seed_key LIKE %s",
        (f"{KEY}location:%",),
    ).fetchone()
    print(
        f"generated {ORGANISATIONS:,} organisations, {count:,} locations ({row[0] if row else '?':,} confidential) "
        f"and {count:,} services, {len(area_ids):,} with a service area, in {done - started:.0f} s: "
        f"locations {located - started:.0f} s, services {listed - located:.0f} s, "
        f"areas and coverage {refreshed - listed:.0f} s, VACUUM ANALYZE {done - refreshed:.0f} s"
    )


def build_bare(conn: psycopg.Connection) -> None:
    """The bare ceilings' table, rebuilt with the directory it copies (a stale copy would answer other
    pages than the API does)."""
    started = time.monotonic()
    conn.execute(f"DROP TABLE IF EXISTS {BARE}")
    for statement in BARE_TABLE:
        conn.execute(statement)
    conn.commit()
    with psycopg.connect(conn.info.dsn, password=conn.info.password, autocommit=True) as maintenance:
        maintenance.execute(f"VACUUM (ANALYZE) {BARE}")
    print(f"built the bare table {BARE} in {time.monotonic() - started:.0f} s")


def make_origins(plain_url: str, count: int) -> list[Origin]:
    """Random metropolitan commune points jittered by up to ~1 km, each with a random specialism and a
    place of danger AWAY_KM away in a random direction, written to the table bench_origin that the
    pgbench scripts read (then read back: PostGIS computes the places of danger)."""
    with psycopg.connect(plain_url) as conn:
        communes = conn.execute(METROPOLITAN_COMMUNES.format(columns="ST_X(point), ST_Y(point)") + " ORDER BY code")
        points = communes.fetchall()
        rng = random.Random(119)
        # Azimuths from a generator of their own: the origins stay those of the runs before away_from.
        azimuths = random.Random(60)
        slugs = sorted(SLUGS - {"crip"})
        rows = []
        for i in range(1, count + 1):
            lon, lat = rng.choice(points)
            lon, lat = round(lon + rng.uniform(-0.012, 0.012), 6), round(lat + rng.uniform(-0.009, 0.009), 6)
            rows.append((i, lon, lat, [rng.choice(slugs)], *box(lon, lat), azimuths.uniform(0, 360)))
        conn.execute("DROP TABLE IF EXISTS bench_origin")
        conn.execute(
            """CREATE TABLE bench_origin (id int PRIMARY KEY, lon float8 NOT NULL, lat float8 NOT NULL,
                   specialisms varchar(64)[] NOT NULL, min_lon float8 NOT NULL, min_lat float8 NOT NULL,
                   max_lon float8 NOT NULL, max_lat float8 NOT NULL, away_azimuth float8 NOT NULL,
                   away_lon float8, away_lat float8)"""
        )
        with conn.cursor().copy(
            "COPY bench_origin (id, lon, lat, specialisms, min_lon, min_lat, max_lon, max_lat, away_azimuth) FROM STDIN"
        ) as copy:
            for row in rows:
                copy.write_row(row)
        # On the spheroid, as the API measures min_distance_km (ST_DWithin on geography).
        conn.execute(
            f"""UPDATE bench_origin
                   SET away_lon = round(ST_X(away)::numeric, 6)::float8,
                       away_lat = round(ST_Y(away)::numeric, 6)::float8
                  FROM (SELECT id AS origin_id,
                               ST_Project(ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography, {AWAY_KM * 1000},
                                          radians(away_azimuth))::geometry AS away
                          FROM bench_origin) projected
                 WHERE id = origin_id"""
        )
        conn.execute("ALTER TABLE bench_origin ALTER away_lon SET NOT NULL, ALTER away_lat SET NOT NULL")
        conn.execute("ANALYZE bench_origin")
        read = conn.execute("SELECT id, lon, lat, specialisms[1], away_lon, away_lat FROM bench_origin ORDER BY id")
        return [Origin(*row) for row in read]


# --- the statements the API runs ----------------------------------------------------------------


class _Recorder:
    """Stands in for the reader connection: keeps what search.search executes, answers one row. The
    search's own statement goes through search._execute (which converts its placeholders to $n for a
    raw cursor): `raw` stands in for that function, so the statement kept is the named one psycopg
    would also run, and pgbench_script rewrites."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, statement: str, params: dict[str, Any], *, prepare: bool | None = None) -> _Recorder:
        self.calls.append((statement, params))
        return self

    async def raw(
        self, conn: object, statement: str, params: dict[str, Any], *, prepare: bool | None = None
    ) -> _Recorder:
        return await self.execute(statement, params, prepare=prepare)

    async def fetchall(self) -> list[tuple[Any, ...]]:
        return [("{}", None)]  # (feature, exact safe house)


def api_query(params: dict[str, str]) -> search.Query:
    """The search.Query the route builds for these query parameters (its own defaults included)."""
    request = SimpleNamespace(
        query_params=QueryParams(params),
        app=SimpleNamespace(state=SimpleNamespace(cursors=SimpleNamespace(decode=lambda scope, cursor: None))),
    )
    numbers = ("lat", "lon", "radius_km", "min_distance_km")
    arguments: dict[str, Any] = {
        name: float(value) if name in numbers else [value] if name == "specialism" else value
        for name, value in params.items()
    }
    arguments["limit"] = int(arguments.get("limit", LIMIT))
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(search_query).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    return asyncio.run(search_query(request, None, VIEWER, **{**defaults, **arguments}))  # type: ignore[arg-type]


def api_statement(query: search.Query) -> tuple[str, dict[str, Any]]:
    """The statement and parameters search.search sends for `query`, exactly."""
    recorder = _Recorder()
    with mock.patch.object(search, "_execute", recorder.raw):
        asyncio.run(search.search(recorder, query, now=datetime.now(UTC)))  # type: ignore[arg-type]
    if len(recorder.calls) != 1:
        raise RuntimeError(f"search.search ran {len(recorder.calls)} statements, expected 1")
    return recorder.calls[0]


def knn_params(origin: Origin, *, radius_km: int | None = None, away: bool = False) -> dict[str, str]:
    """The nearest search's query parameters: the route's defaults but for the radius, when given, and,
    with `away`, away_from the origin's place of danger."""
    params = {"lat": decimal(origin.lat), "lon": decimal(origin.lon), "specialism": origin.specialism}
    if radius_km is not None:
        params["radius_km"] = str(radius_km)
    if away:
        params["away_from"] = f"{decimal(origin.away_lon)},{decimal(origin.away_lat)}"
        params["min_distance_km"] = str(AWAY_MIN_KM)
    return {**params, "limit": str(LIMIT)}


def bbox_params(origin: Origin) -> dict[str, str]:
    return {"bbox": ",".join(map(decimal, origin.bbox)), "limit": str(LIMIT)}


# The API's searches by name: the query parameters of each at an origin, from which both the HTTP
# request and the statement pgbench runs are made, so that both sides do the same search.
SEARCHES: dict[str, Callable[[Origin], dict[str, str]]] = {
    "knn": knn_params,
    "bbox": bbox_params,
    "near": partial(knn_params, radius_km=AWAY_RADIUS_KM),
    "away": partial(knn_params, radius_km=AWAY_RADIUS_KM, away=True),
}

# (search name) -> the statement and parameters search.search sends for it at origin 1.
Statements = dict[str, tuple[str, dict[str, Any]]]


def ogc_path(origin: Origin) -> str:
    """The bbox listing as an OGC API – Features client asks it of /ogc."""
    return "/ogc/collections/services/items?" + urlencode(bbox_params(origin), safe=",")


def search_path(params: dict[str, str]) -> str:
    return "/v1/services/search?" + urlencode(params, safe=",")


def pgbench_script(statement: str, params: dict[str, Any], origins: int) -> tuple[str, dict[str, str]]:
    """The API's statement for pgbench, its text unchanged but for the placeholders: per-origin values
    read from row :i of bench_origin, the others bound as pgbench variables (-D) with the type psycopg
    binds them with; None as NULL (pgbench cannot bind a NULL). A per-origin name the search leaves
    empty is no per-origin value: a bbox listing has no specialism, though its `match` names the
    (empty) list of those asked for."""
    if re.search(r"(?<![:\w]):\w", statement):
        raise RuntimeError("the statement has a ':name' that pgbench would take for a variable")
    transformer = Transformer()
    variables: dict[str, str] = {}

    def placeholder(match: re.Match[str]) -> str:
        name = match.group(1)
        value = params[name]
        if name in ORIGIN_PARAMETERS and value not in (None, []):
            return f"(SELECT {name} FROM bench_origin WHERE id = :i)"
        if value is None:
            return "NULL"
        if value == "":
            return "''"  # pgbench substitutes an empty variable with nothing at all
        if isinstance(value, list):  # psycopg binds a list untyped: the statement casts it
            variables[name] = "{" + ",".join('"' + re.sub(r'(["\\])', r"\\\1", str(v)) + '"' for v in value) + "}"
            return f":{name}"
        dumper = transformer.get_dumper(value, PyFormat.AUTO)
        dumper = dumper.upgrade(value, PyFormat.AUTO)
        info = psycopg.postgres.types.get(dumper.oid)
        variables[name] = value.isoformat() if isinstance(value, datetime) else str(value)
        return f":{name}::{info.name}" if info else f":{name}"

    text = re.sub(r"%\((\w+)\)s", placeholder, statement).replace("%%", "%")
    return pgbench_text(text, origins), variables


def pgbench_text(statement: str, origins: int) -> str:
    """A pgbench script: `statement`, one per transaction, at a random origin :i."""
    return f"\\set i random(1, {origins})\n{statement.strip()};\n"


def at_origin_1(script: str) -> str:
    """The statement of a pgbench script with psycopg placeholders, to run at origin 1."""
    raw = script.split("\n", 1)[1].strip().removesuffix(";").replace("%", "%%")
    return re.sub(r"(?<![:\w]):(\w+)", r"%(\1)s", raw)


def same_answer(plain_url: str, script: str, variables: dict[str, str], statement: str, params: dict[str, Any]) -> str:
    """Run the pgbench statement through psycopg at origin 1: it must answer what the API's statement does."""
    try:
        with psycopg.connect(plain_url, autocommit=True) as conn:
            api_rows = conn.execute(statement, params).fetchall()
            raw_rows = conn.execute(at_origin_1(script), {"i": 1, **variables}).fetchall()
    except psycopg.Error as exc:
        return f"raw SQL statement NOT checked: {exc}"
    verdict = "the same" if api_rows == raw_rows else "NOT the same"
    return f"raw SQL statement checked: {verdict} {len(raw_rows)} rows as the API's statement at origin 1"


def bare_page(plain_url: str, script: str) -> str:
    """The bare ceiling's page at origin 1: it must be as full as the API's (features, bytes)."""
    try:
        with psycopg.connect(plain_url, autocommit=True) as conn:
            row = conn.execute(
                "SELECT json_array_length(page -> 'features'), octet_length(page::text)"
                f" FROM ({at_origin_1(script)}) q(page)",
                {"i": 1},
            ).fetchone()
    except psycopg.Error as exc:
        return f"bare page NOT checked: {exc}"
    if row is None or row[0] is None:
        return "bare page at origin 1: no features"
    return f"bare page at origin 1: {row[0]} features, {row[1] / 1024:.1f} KiB"


# --- measuring ----------------------------------------------------------------------------------

# What a failed measurement raises: the run goes on, the figure is reported as not measured.
MEASUREMENT_ERRORS = (RuntimeError, OSError, subprocess.SubprocessError, httpx.HTTPError, psycopg.Error)


@dataclass(frozen=True)
class Server:
    """A server under wrk: where it listens, and its process, whose CPU time run_wrk reads."""

    base: str
    pid: int


def wait_ready(url: str, process: subprocess.Popen[bytes], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with status {process.returncode} before it was ready")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not become ready within {timeout:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextlib.contextmanager
def api_server(url: str) -> Iterator[Server]:
    """`maillage serve` on a free port, up for the whole run and idle between its wrk runs. uvicorn.run
    serves in the very process started here (one worker, no fork): its CPU time is the server's."""
    port = free_port()
    env = {**os.environ, "PORT": str(port), "MAILLAGE_LOG_JSON": "true", "DATABASE_URL": url}
    process = subprocess.Popen(  # noqa: S603
        [sys.executable, "-m", "api.cli", "serve"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        server = Server(f"http://127.0.0.1:{port}", process.pid)
        wait_ready(f"{server.base}/readyz", process, "the API")
        yield server
    finally:
        stop(process)


def api_headers(settings: Settings) -> dict[str, str]:
    """A specialist's token, fresh for each wrk run: they live at most 15 minutes."""
    from api.app import build_token_service

    token = build_token_service(settings).issue(subject="bench", role=Role.specialist)
    return {"Authorization": f"Bearer {token}"}


def cpu_seconds(pid: int) -> float:
    """The user and system CPU time of process `pid`, all its threads (fields 14 and 15 of
    /proc/<pid>/stat, in clock ticks; fields counted after the command name, which may hold spaces)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(
    base: str,
    paths: list[str],
    seconds: int,
    workdir: Path,
    name: str,
    headers: dict[str, str],
    cpu_pid: int | None = None,
) -> dict[str, float]:
    """wrk over `paths` in random order after a warm-up; with `cpu_pid`, also the CPU time that process
    spent per request served during the measured run (nothing subtracted: what the server costs)."""
    lua = workdir / f"{name}.lua"
    table = ",".join(f'"{path}"' for path in paths)
    header_table = ",".join(f'["{key}"] = "{value}"' for key, value in headers.items())
    lua.write_text(
        f"""local paths = {{{table}}}
local headers = {{{header_table}}}
math.randomseed(119)
request = function()
  return wrk.format("GET", paths[math.random(#paths)], headers)
end
"""
    )
    wrk = ["wrk", "-t1", f"-c{CONNECTIONS}", "-s", str(lua), "--latency"]
    subprocess.run([*wrk, f"-d{WARM_UP_SECONDS}s", base], check=True, capture_output=True)
    cpu_before = cpu_seconds(cpu_pid) if cpu_pid else 0.0
    output = subprocess.run([*wrk, f"-d{seconds}s", base], check=True, capture_output=True, text=True).stdout
    cpu = cpu_seconds(cpu_pid) - cpu_before if cpu_pid else None

    def latency(label: str) -> float:
        match = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", output, re.MULTILINE)
        if not match:
            raise RuntimeError(f"wrk output without {label}%:\n{output}")
        value, unit = float(match.group(1)), match.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    total = re.search(r"(\d+) requests in", output)
    requests = float(total.group(1)) if total else 0.0
    figures = {
        "throughput": float(rate.group(1)) if rate else 0.0,
        "p50": latency("50"),
        "p99": latency("99"),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": float(sum(int(n) for n in socket_errors.groups())) if socket_errors else 0.0,
        "requests": requests,
    }
    if cpu is not None and requests:
        figures["cpu_ms_per_request"] = cpu * 1000 / requests
    return figures


def sample(base: str, paths: list[str], headers: dict[str, str]) -> str:
    """Mean features and bytes per page over a few requests: both sides must do comparable work."""
    features, sizes = [], []
    with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
        for path in paths:
            response = client.get(path)
            response.raise_for_status()
            features.append(len(response.json()["features"]))
            sizes.append(len(response.content))
    return f"{statistics.mean(features):.1f} features, {statistics.mean(sizes) / 1024:.1f} KiB per page"


class Runs:
    """The run's figures by name, each measured or missing with why (one failure leaves the others to
    report), with what was checked or sampled beside each."""

    def __init__(self, plain_url: str, workdir: Path, seconds: int, origins: int) -> None:
        self.plain_url = plain_url
        self.workdir = workdir
        self.seconds = seconds
        self.origins = origins
        self.figures: dict[str, dict[str, float]] = {}
        self.missing: dict[str, str] = {}
        self.notes: dict[str, list[str]] = {}

    def note(self, name: str, text: str) -> None:
        self.notes.setdefault(name, []).append(text)

    def measure(self, name: str, run: Callable[[], dict[str, float]]) -> None:
        try:
            self.figures[name] = run()
        except MEASUREMENT_ERRORS as exc:
            reason = str(exc)
            if isinstance(exc, subprocess.CalledProcessError):
                output = exc.stderr if isinstance(exc.stderr, str) else (exc.stderr or b"").decode(errors="replace")
                reason = f"{exc.cmd[0]} exited with status {exc.returncode}: {output.strip()[-500:]}"
            self.missing[name] = reason
            print(f"{name} not measured: {reason}")

    def pgbench(self, name: str, script: str, variables: dict[str, str] | None = None) -> None:
        path = self.workdir / f"{name}.sql"
        path.write_text(script)

        def run() -> dict[str, float]:
            figures = run_pgbench(
                self.plain_url,
                path,
                seconds=self.seconds,
                workdir=self.workdir,
                connections=CONNECTIONS,
                warm_up_seconds=WARM_UP_SECONDS,
                variables=variables,
            )
            return {**figures, "non_2xx": figures["failed"]}

        self.measure(name, run)

    def bare(self, name: str, statement: str) -> None:
        """A bare ceiling: its page at origin 1 checked, then pgbench."""
        script = pgbench_text(statement, self.origins)
        self.note(name, bare_page(self.plain_url, script))
        self.pgbench(name, script)

    def api_sql(self, name: str, statement: str, params: dict[str, Any]) -> None:
        """The API's statement under pgbench, checked first to answer the API's page at origin 1."""
        script, variables = pgbench_script(statement, params, self.origins)
        self.note(name, same_answer(self.plain_url, script, variables, statement, params))
        self.pgbench(name, script, variables)

    def wrk(
        self,
        name: str,
        server: Server | None,
        paths: list[str],
        headers: Callable[[], dict[str, str]],
        *,
        down: str = "",
        pages: bool = True,
    ) -> None:
        """wrk against `server` (None: it is down, for the reason `down`); with `pages`, 50 of its
        GeoJSON pages sampled first."""
        if server is None:
            self.missing[name] = down
            return

        def run() -> dict[str, float]:
            if pages:
                self.note(name, "pages sampled at 50 origins: " + sample(server.base, paths[:50], headers()))
            return run_wrk(server.base, paths, self.seconds, self.workdir, name, headers(), cpu_pid=server.pid)

        self.measure(name, run)


def tipg_python(settings: Settings) -> Path:
    """A virtualenv with tipg under var/bench/, never the project's .venv; created on first use."""
    venv = settings.var_dir / "bench" / "tipg-venv"
    python = venv / "bin" / "python"
    marker = venv / ".installed"
    if marker.exists() and marker.read_text() == " ".join(TIPG_PACKAGES):
        return python
    print(f"installing {' '.join(TIPG_PACKAGES)} into {venv}")
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, capture_output=True)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *TIPG_PACKAGES],
        capture_output=True,
        text=True,
    )
    if install.returncode != 0:
        raise RuntimeError(f"pip install failed: {install.stderr.strip().splitlines()[-1:]}")
    marker.write_text(" ".join(TIPG_PACKAGES))
    return python


@contextlib.contextmanager
def tipg_server(python: Path, plain_url: str, workdir: Path) -> Iterator[Server]:
    """tipg serving the view over the same tables, one uvicorn worker in the process started here."""
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TIPG_")},
        "DATABASE_URL": plain_url,
        "TIPG_DB_SCHEMAS": '["public"]',
        "TIPG_DB_TABLES": f'["public.{TIPG_VIEW}"]',
        # Extents are catalogue metadata computed at start-up (a full scan of a view): not what we measure.
        "TIPG_DB_SPATIAL_EXTENT": "false",
        "TIPG_DB_DATETIME_EXTENT": "false",
    }
    command = [
        str(python),
        "-m",
        "uvicorn",
        "tipg.main:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    log = workdir / "tipg.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(command, env=env, cwd=workdir, stdout=output, stderr=subprocess.STDOUT)  # noqa: S603
    try:
        server = Server(f"http://127.0.0.1:{port}", process.pid)
        try:
            wait_ready(f"{server.base}/collections/public.{TIPG_VIEW}", process, "tipg")
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}; its log: {log.read_text(errors='replace')[-2000:]}") from exc
        yield server
    finally:
        stop(process)


def measure_all(settings: Settings, runs: Runs, plain_url: str, origins: list[Origin], statements: Statements) -> None:
    """Every figure, interleaved search by search (bare ceiling, the API's statement, the API over
    HTTP, tipg), so that a drift of the machine over the run spreads over all sides of each ratio."""
    try:
        tipg_venv: Path | None = tipg_python(settings)
        tipg_down = ""
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        tipg_venv, tipg_down = None, f"tipg could not be installed: {exc}"
    headers = partial(api_headers, settings)
    with contextlib.ExitStack() as stack:
        api: Server | None = None
        api_down = ""
        try:
            api = stack.enter_context(api_server(plain_url.replace("postgresql://", "postgresql+psycopg://", 1)))
        except (RuntimeError, OSError) as exc:
            api_down = f"the API could not be run: {exc}"
            print(api_down)

        def api_sql(name: str) -> None:
            runs.api_sql(f"api_{name}_sql", *statements[name])

        def api_http(name: str) -> None:
            paths = [search_path(SEARCHES[name](o)) for o in origins]
            runs.wrk(f"api_{name}_http", api, paths, headers, down=api_down)

        runs.bare("bare_knn", BARE_KNN)
        api_sql("knn")
        api_http("knn")
        runs.bare("bare_bbox", BARE_BBOX)
        api_sql("bbox")
        api_http("bbox")
        # The same box through OGC API – Features (numberMatched counted on every first page).
        runs.wrk("ogc_bbox_http", api, [ogc_path(o) for o in origins], headers, down=api_down)
        if tipg_venv is None:
            runs.missing["tipg_bbox"] = tipg_down
        else:
            try:
                with tipg_server(tipg_venv, plain_url, runs.workdir) as tipg:
                    runs.wrk("tipg_bbox", tipg, [o.tipg_path() for o in origins], dict)
            except (RuntimeError, OSError) as exc:
                runs.missing["tipg_bbox"] = f"tipg could not be run: {exc}"
        # With and without away_from side by side, each way: their ratio is the figure.
        api_sql("near")
        api_sql("away")
        api_http("near")
        api_http("away")
        runs.wrk("api_specialisms_http", api, ["/v1/specialisms"], headers, down=api_down, pages=False)


def explain(plain_url: str, statements: Statements) -> None:
    with psycopg.connect(plain_url, autocommit=True) as conn:
        for label, (statement, params) in statements.items():
            plan = conn.execute("EXPLAIN (ANALYZE, BUFFERS) " + statement, params).fetchall()
            print(f"\nEXPLAIN (ANALYZE, BUFFERS) — {label}")
            print("\n".join(row[0] for row in plan))


# --- report -------------------------------------------------------------------------------------

# The figures of each search, in the order they are shown, with their row labels.
SECTIONS = {
    "20 nearest with one specialism (radius 30 km, covering areas included)": {
        "bare_knn": "bare ceiling (pgbench)",
        "api_knn_sql": "raw SQL (pgbench)",
        "api_knn_http": "HTTP API (wrk)",
    },
    f"bbox listing of 20 ({2 * BBOX_HALF_DEGREES:g}° box)": {
        "bare_bbox": "bare ceiling (pgbench)",
        "api_bbox_sql": "raw SQL (pgbench)",
        "api_bbox_http": "HTTP API (wrk)",
        "ogc_bbox_http": "HTTP /ogc items (wrk)",
        "tipg_bbox": "tipg 1.6.1 (wrk)",
    },
    f"20 nearest within {AWAY_RADIUS_KM} km, without and with away_from a point {AWAY_KM} km off "
    f"(min_distance_km={AWAY_MIN_KM})": {
        "api_near_sql": "raw SQL, without",
        "api_away_sql": "raw SQL, away_from",
        "api_near_http": "HTTP API, without",
        "api_away_http": "HTTP API, away_from",
    },
    "reference: GET /v1/specialisms (authenticated, no query)": {"api_specialisms_http": "HTTP API (wrk)"},
}
# The figures of the closing JSON line, with the suffix of their throughput: transactions or requests.
SUMMARY = {
    "bare_knn": "tps",
    "api_knn_sql": "tps",
    "api_knn_http": "rps",
    "bare_bbox": "tps",
    "api_bbox_sql": "tps",
    "api_bbox_http": "rps",
    "ogc_bbox_http": "rps",
    "tipg_bbox": "rps",
}


def line(label: str, figures: dict[str, float] | None, reason: str = "") -> str:
    if figures is None:
        return f"  {label:22}  not measured: {reason}"
    cpu = f"{figures['cpu_ms_per_request']:>11.2f} ms" if "cpu_ms_per_request" in figures else ""
    return (
        f"  {label:22}{figures['throughput']:>10,.0f} /s {figures['p50']:>7.2f} ms{figures['p99']:>8.2f} ms"
        f"{figures['requests']:>11,.0f}{figures['non_2xx']:>10,.0f}{cpu}"
    )


def verdict(value: float, target: float, *, below: bool = False) -> str:
    return "met" if (value < target if below else value >= target) else "NOT met"


def ratio(figures: dict[str, dict[str, float]], numerator: str, denominator: str) -> float | None:
    """Throughput of one figure over another's; None when either is missing (or nothing was served)."""
    top, bottom = figures.get(numerator), figures.get(denominator)
    if top is None or bottom is None or not bottom["throughput"]:
        return None
    return top["throughput"] / bottom["throughput"]


def verdicts(figures: dict[str, dict[str, float]]) -> list[str]:
    """The targets of issue 11, HTTP judged against the bare ceilings (and tipg), then the ratios that
    say where the time goes, as secondary information."""
    lines = []

    def judge(
        label: str, value: float | None, target: float, show: Callable[[float], str], *, below: bool = False
    ) -> str:
        if value is None:
            return f"{label} not measured"
        sign = "<" if below else "≥"
        return f"{label} {show(value)} (target {sign} {show(target)}: {verdict(value, target, below=below)})"

    def share(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.1%}"

    def times(value: float) -> str:
        return f"{value:.2f}×"

    def ms(value: float) -> str:
        return f"{value:.1f} ms"

    for search_name, label in (("knn", "KNN"), ("bbox", "bbox")):
        http = figures.get(f"api_{search_name}_http")
        checks = [
            judge("HTTP / bare ceiling", ratio(figures, f"api_{search_name}_http", f"bare_{search_name}"), 0.25, share)
        ]
        if search_name == "bbox":
            checks.append(judge("HTTP / tipg", ratio(figures, "api_bbox_http", "tipg_bbox"), 4, times))
        checks.append(judge("HTTP p99", http["p99"] if http else None, 50, ms, below=True))
        lines.append(f"  {label:5} " + "; ".join(checks))
    away = ratio(figures, "api_away_http", "api_near_http")
    lines.append("  away  " + judge("HTTP away_from / without", away, 2 / 3, share))
    lines.append("secondary: where the time goes (throughput ratios)")
    for search_name, label in (("knn", "KNN"), ("bbox", "bbox")):
        over_sql = ratio(figures, f"api_{search_name}_http", f"api_{search_name}_sql")
        sql_over_bare = ratio(figures, f"api_{search_name}_sql", f"bare_{search_name}")
        lines.append(
            f"  {label:5} HTTP / API statement in raw SQL {share(over_sql)}; "
            f"API statement / bare ceiling {share(sql_over_bare)}"
        )
    lines.append(f"  away  raw SQL away_from / without {share(ratio(figures, 'api_away_sql', 'api_near_sql'))}")
    cpu = {name: figures[name].get("cpu_ms_per_request") for name in figures if name.endswith("_http")}
    measured = [f"{name.removeprefix('api_').removesuffix('_http')} {ms:.2f} ms" for name, ms in cpu.items() if ms]
    if measured:
        lines.append("  API process CPU per request (outside PostgreSQL): " + ", ".join(measured))
    if "tipg_bbox" in figures and "cpu_ms_per_request" in figures["tipg_bbox"]:
        lines.append(f"  tipg process CPU per request: {figures['tipg_bbox']['cpu_ms_per_request']:.2f} ms")
    return lines


def summary(figures: dict[str, dict[str, float]]) -> dict[str, float | None]:
    """The closing JSON line: null for what could not be measured."""
    result: dict[str, float | None] = {}
    for name, unit in SUMMARY.items():
        measured = figures.get(name)
        result[f"{name}_{unit}"] = round(measured["throughput"], 1) if measured else None
        result[f"{name}_p50_ms"] = round(measured["p50"], 2) if measured else None
        result[f"{name}_p99_ms"] = round(measured["p99"], 2) if measured else None
    away = figures.get("api_away_http")
    result["away_http_rps"] = round(away["throughput"], 1) if away else None
    away_ratio = ratio(figures, "api_away_http", "api_near_http")
    result["away_ratio"] = round(away_ratio, 3) if away_ratio is not None else None
    cpu = figures.get("api_knn_http", {}).get("cpu_ms_per_request")
    result["python_ms_per_request"] = round(cpu, 3) if cpu is not None else None
    return result


def revision() -> str:
    """The commit measured, and whether the working tree differs from it: figures go with code."""
    try:
        head = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"], check=True, capture_output=True, text=True
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(REPO_ROOT), "status", "--porcelain", "--untracked-files=no"],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split("\n")
    except (OSError, subprocess.SubprocessError):
        return "an unknown commit"
    files = [line[3:] for line in changed if line.strip()]
    return f"commit {head}" + (f" with uncommitted changes to {', '.join(files)}" if files else "")


def report(args: argparse.Namespace, runs: Runs) -> None:
    print(
        f"\nservice search — {args.services:,} services, {CONNECTIONS} concurrent connections, {args.seconds} s "
        f"each, database '{DATABASE}', {os.cpu_count()} CPUs shared by clients, servers and PostgreSQL"
    )
    # open_now and next_opening cost more for services with weekly hours when they are closed.
    print(
        f"measured around {datetime.now(ZoneInfo('Europe/Paris')):%A %Y-%m-%d %H:%M} Europe/Paris time, "
        f"code at {revision()}"
    )
    print(f"  {'':22}{'throughput':>13}{'p50':>11}{'p99':>11}{'requests':>11}{'non-2xx':>10}{'server CPU/req':>17}")
    for title, rows in SECTIONS.items():
        print(title)
        for name, label in rows.items():
            print(line(label, runs.figures.get(name), runs.missing.get(name, "")))
        for name in rows:
            for text in runs.notes.get(name, []):
                print(f"  {rows[name]}: {text}")
            figures = runs.figures.get(name)
            if figures and figures.get("socket_errors"):
                print(
                    f"  {rows[name]}: {figures['socket_errors']:,.0f} wrk socket errors (connect, read, write, timeout)"
                )
    print("verdicts (HTTP against the bare ceilings and tipg)")
    print("\n".join(verdicts(runs.figures)))
    print(json.dumps(summary(runs.figures)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=int, default=15, help="duration of each measured run")
    parser.add_argument("--services", type=int, default=1_000_000, help="synthetic services in the bench database")
    parser.add_argument("--origins", type=int, default=5000, help="random origins the clients pick from")
    parser.add_argument("--explain", action="store_true", help="print EXPLAIN ANALYZE of the API's statements")
    args = parser.parse_args()
    if not shutil.which("wrk") or not shutil.which("pgbench"):
        apt_install("wrk", "postgresql-client")
    settings = Settings()
    plain = prepare(settings, args.services)
    global VIEWER
    with psycopg.connect(plain) as conn:
        hotline = conn.execute("SELECT id FROM organisation WHERE seed_key = %s", (HOTLINE_SEED_KEY,)).fetchone()
    assert hotline is not None
    VIEWER = Principal(subject="bench", role=Role.specialist, organisation_id=hotline[0], issuer=settings.token_issuer)
    origins = make_origins(plain, args.origins)
    statements = {name: api_statement(api_query(params(origins[0]))) for name, params in SEARCHES.items()}
    if args.explain:
        explain(plain, {f"{name}, origin 1 {origins[0]}": value for name, value in statements.items()})
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        os.chmod(workdir, 0o755)
        runs = Runs(plain, workdir, args.seconds, len(origins))
        measure_all(settings, runs, plain, origins, statements)
    report(args, runs)


if __name__ == "__main__":
    main()
