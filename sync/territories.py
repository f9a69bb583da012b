"""Territories kept current: a newer official release of the communes, and every stored commune code
remapped through INSEE's commune events.

The communes of the Code officiel géographique change every 1 January (mergers into communes
nouvelles, code changes). `maillage territories refresh` reads, from files an operator downloads:
- INSEE's list of communes of the year (`v_commune_YYYY.csv`: TYPECOM, COM, DEP, LIBELLE…),
- INSEE's commune events (`v_mvt_commune_YYYY.csv`, geo/commune_events.py),
- the communes' boundaries from IGN ADMIN EXPRESS COG as GeoJSON in WGS 84 (`ogr2ogr -f GeoJSON
  -t_srs EPSG:4326 communes.geojson COMMUNE.shp`), each feature with its `INSEE_COM`; a commune the
  file does not name keeps the boundary it has.

In one transaction: new communes are added and others renamed or redrawn; every stored code of a
commune that no longer exists (locations, organisations' seats, cases, service areas, empty-search
counts, EPCIs, seats of départements) is remapped to the commune that now holds it; the vanished
communes are removed; areas, départements and collectivités are recomputed (the coverage distances of
the changed communes by the worker's nightly job); and the reference year is recorded. A code the
events cannot map to one commune (a split) is never guessed: it stays, with its commune row, and the
report names it.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import ijson
import psycopg

from directory.areas import REFRESH
from geo.commune_events import Remap, parse_events, remap_table
from geo.competence import collectivite_for
from geo.loading import DATASET, LICENCE, REFERENCE_YEAR, dissolve
from geo.names import normalise

# Every column holding a commune code, and how a vanished code is replaced there. A test compares this
# with the database's foreign keys to `commune`, so a new one cannot be forgotten.
FOREIGN_KEYS = (
    ("location", "commune_code"),
    ("organisation", "seat_commune_code"),
    ("case_record", "found_in_commune_code"),
    ("departement", "seat_commune_code"),
    ("collectivite", "seat_commune_code"),
)
ARRAYS = (("service_area", "communes"), ("epci", "communes"))
# Rows keyed by commune: merged into the successor's row (empty_search) or recomputed (coverage).
MERGED = ("empty_search", "commune_code")
RECOMPUTED = ("commune_coverage", "commune_code")


@dataclass(frozen=True)
class CogCommune:
    code: str
    name: str
    departement: str


@dataclass
class RefreshReport:
    year: int
    added: list[str] = field(default_factory=list)
    renamed: int = 0
    redrawn: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    remaps: list[Remap] = field(default_factory=list)
    unresolved: list[Remap] = field(default_factory=list)
    rows_remapped: dict[str, int] = field(default_factory=dict)


def read_communes(path: Path) -> Iterator[CogCommune]:
    """The communes (TYPECOM = COM) of INSEE's `v_commune_YYYY.csv`."""
    with path.open(encoding="utf-8-sig", newline="") as handle:
        reader = csv.DictReader(handle)
        columns = {name.upper() for name in reader.fieldnames or ()}
        missing = {"TYPECOM", "COM", "DEP", "LIBELLE"} - columns
        if missing:
            raise ValueError(f"{path.name}: not INSEE's list of communes (missing {', '.join(sorted(missing))})")
        for row in reader:
            row = {key.upper(): value for key, value in row.items()}
            if row["TYPECOM"] == "COM":
                yield CogCommune(row["COM"], row["LIBELLE"], row["DEP"])


def read_boundaries(path: Path) -> Iterator[tuple[str, str]]:
    """(INSEE code, GeoJSON geometry text) of each feature of a GeoJSON FeatureCollection, streamed."""
    with path.open("rb") as handle:
        for feature in ijson.items(handle, "features.item", use_float=True):
            properties = feature.get("properties") or {}
            code = properties.get("INSEE_COM") or properties.get("insee_com")
            if not isinstance(code, str) or not feature.get("geometry"):
                raise ValueError(f"{path.name}: a feature without INSEE_COM or geometry")
            yield code, json.dumps(feature["geometry"])


def refresh(
    conn: psycopg.Connection,
    *,
    communes: Iterable[CogCommune],
    boundaries: Iterable[tuple[str, str]],
    events: Iterable[str],
    year: int,
    source: str,
) -> RefreshReport:
    """Apply a newer release in the caller's transaction; returns what changed."""
    loaded = conn.execute("SELECT reference_year FROM reference_dataset WHERE name = %s", (DATASET,)).fetchone()
    current_year = loaded[0] if loaded and loaded[0] else REFERENCE_YEAR
    if year <= current_year:
        raise ValueError(f"the territories are already those of {current_year}: a refresh needs a later year")
    report = RefreshReport(year)
    _stage(conn, communes, boundaries)
    codes = {row[0] for row in conn.execute("SELECT code FROM stage_cog").fetchall()}
    if not codes:
        raise ValueError("the list of communes is empty")
    missing = conn.execute(
        """SELECT string_agg(s.code, ', ' ORDER BY s.code) FROM stage_cog s
            WHERE NOT EXISTS (SELECT 1 FROM commune c WHERE c.code = s.code)
              AND NOT EXISTS (SELECT 1 FROM stage_boundary b WHERE b.code = s.code)"""
    ).fetchone()
    if missing and missing[0]:
        raise ValueError(f"new communes without a boundary in the boundaries file: {missing[0]}")

    # Every code stored anywhere that names a commune gone from the release.
    stored = conn.execute("SELECT code FROM commune ORDER BY code").fetchall()
    vanished = [row[0] for row in stored if row[0] not in codes]
    since = date(current_year, 1, 1)
    table = remap_table(parse_events(events), current_codes=codes, since=since)
    for code in vanished:
        remap = table.get(code) or Remap(code, None, (), "no successor in the events")
        (report.remaps if remap.new_code else report.unresolved).append(remap)
    conn.cursor().executemany(
        "INSERT INTO stage_remap (old, new) VALUES (%s, %s)", [(r.old_code, r.new_code) for r in report.remaps]
    )
    _upsert(conn, report)
    _remap(conn, report)
    resolved = [r.old_code for r in report.remaps]
    # The départements that lose a commune are dissolved again too (a code change moves it across).
    left = conn.execute("SELECT DISTINCT departement_code FROM commune WHERE code = ANY(%s)", (resolved,)).fetchall()
    conn.execute("DELETE FROM commune_coverage WHERE commune_code = ANY(%s)", (resolved,))
    conn.execute("DELETE FROM commune WHERE code = ANY(%s)", (resolved,))
    report.removed = resolved
    _recompute(conn, report, [row[0] for row in left])
    conn.execute(
        """UPDATE reference_dataset SET source = %s, version = %s, licence = %s, reference_year = %s, loaded_at = now()
            WHERE name = %s""",
        (source, f"cog-{report.year}", LICENCE, report.year, DATASET),
    )
    conn.execute("DROP TABLE stage_cog, stage_boundary, stage_remap")
    return report


def _stage(conn: psycopg.Connection, communes: Iterable[CogCommune], boundaries: Iterable[tuple[str, str]]) -> None:
    conn.execute(
        """CREATE TEMP TABLE stage_cog (code text PRIMARY KEY, name text, departement text) ON COMMIT DROP;
           CREATE TEMP TABLE stage_boundary (code text PRIMARY KEY, geojson text) ON COMMIT DROP;
           CREATE TEMP TABLE stage_remap (old text PRIMARY KEY, new text) ON COMMIT DROP"""
    )
    with conn.cursor() as cur:
        with cur.copy("COPY stage_cog (code, name, departement) FROM STDIN") as copy:
            for commune in communes:
                copy.write_row((commune.code, commune.name, commune.departement))
        with cur.copy("COPY stage_boundary (code, geojson) FROM STDIN") as copy:
            for code, geometry in boundaries:
                copy.write_row((code, geometry))
    # A file in another projection, or with swapped coordinates, would redraw France: refused whole.
    conn.execute("ALTER TABLE stage_boundary ADD COLUMN boundary geometry")
    conn.execute("UPDATE stage_boundary SET boundary = ST_Multi(ST_SetSRID(ST_GeomFromGeoJSON(geojson), 4326))")
    wrong = conn.execute(
        """SELECT count(*), string_agg(code, ', ' ORDER BY code) FILTER (WHERE n <= 10) FROM (
               SELECT code, row_number() OVER (ORDER BY code) AS n FROM stage_boundary
                WHERE NOT ST_IsValid(boundary) OR ST_IsEmpty(boundary)
                   OR ST_XMin(boundary) < -62 OR ST_XMax(boundary) > 56
                   OR ST_YMin(boundary) < -22 OR ST_YMax(boundary) > 52) bad"""
    ).fetchone()
    if wrong and wrong[0]:
        raise ValueError(
            f"{wrong[0]} boundaries are invalid or outside France in WGS 84 (EPSG:4326: longitude, latitude), "
            f"e.g. {wrong[1]}: convert with ogr2ogr -t_srs EPSG:4326"
        )
    moved = conn.execute(
        """SELECT count(*), string_agg(c.code, ', ' ORDER BY c.code) FILTER (WHERE n <= 10) FROM (
               SELECT c.code, row_number() OVER (ORDER BY c.code) AS n FROM commune c
                 JOIN stage_boundary b ON b.code = c.code
                WHERE NOT ST_DWithin(b.boundary::geography, c.point::geography, 2000)) c"""
    ).fetchone()
    if moved and moved[0]:
        raise ValueError(
            f"{moved[0]} communes would be redrawn more than 2 km away from where they stand, e.g. {moved[1]}: "
            "is this the right file?"
        )
    unknown = conn.execute(
        """SELECT string_agg(d, ', ') FROM (SELECT DISTINCT departement AS d FROM stage_cog
            WHERE departement NOT IN (SELECT code FROM departement)) x"""
    ).fetchone()
    if unknown and unknown[0]:
        raise ValueError(f"départements this release names and Maillage does not know: {unknown[0]}")


def _upsert(conn: psycopg.Connection, report: RefreshReport) -> None:
    """New communes (their collectivité is their predecessor's, or their département's), new names and
    boundaries; a point is kept while it stays inside its commune."""
    predecessors = {r.new_code: r.old_code for r in report.remaps}
    rows = conn.execute(
        """SELECT s.code, s.name, s.departement,
                  (SELECT c.collectivite_code FROM commune c WHERE c.code = %s::jsonb ->> s.code)
             FROM stage_cog s WHERE NOT EXISTS (SELECT 1 FROM commune c WHERE c.code = s.code)""",
        (json.dumps(predecessors),),
    ).fetchall()
    for code, name, departement, inherited in rows:
        conn.execute(
            """INSERT INTO commune (code, name, search_name, departement_code, collectivite_code, postal_codes,
                                    boundary, point, point_source)
               SELECT s.code, s.name, %(search)s, s.departement, %(collectivite)s, '{}', g.boundary,
                      ST_PointOnSurface(g.boundary), 'surface'
                 FROM stage_cog s
                 CROSS JOIN LATERAL (SELECT b.boundary FROM stage_boundary b WHERE b.code = s.code) g
                WHERE s.code = %(code)s""",
            {
                "code": code,
                "search": normalise(name),
                "collectivite": inherited or collectivite_for(departement, None),
            },
        )
        report.added.append(code)
    renamed = conn.execute(
        """UPDATE commune c SET name = s.name, departement_code = s.departement
             FROM stage_cog s
            WHERE s.code = c.code AND (c.name, c.departement_code) IS DISTINCT FROM (s.name, s.departement)
           RETURNING c.code, c.name"""
    ).fetchall()
    for code, name in renamed:
        conn.execute("UPDATE commune SET search_name = %s WHERE code = %s", (normalise(name), code))
    report.renamed = len(renamed)
    redrawn = conn.execute(
        """UPDATE commune c SET boundary = g.boundary,
                  point = CASE WHEN ST_Covers(g.boundary, c.point) THEN c.point ELSE ST_PointOnSurface(g.boundary) END,
                  point_source = CASE WHEN ST_Covers(g.boundary, c.point) THEN c.point_source ELSE 'surface' END
             FROM stage_boundary g
            WHERE g.code = c.code AND NOT c.code = ANY(%s) AND NOT ST_Equals(c.boundary, g.boundary)
           RETURNING c.code""",
        (report.added,),
    ).fetchall()
    report.redrawn = [row[0] for row in redrawn]


def _remap(conn: psycopg.Connection, report: RefreshReport) -> None:
    for table, column in FOREIGN_KEYS:
        count = conn.execute(
            f"UPDATE {table} t SET {column} = r.new FROM stage_remap r WHERE t.{column} = r.old"
        ).rowcount
        report.rows_remapped[f"{table}.{column}"] = count
    for table, column in ARRAYS:
        count = conn.execute(
            f"""UPDATE {table} t SET {column} = ARRAY(
                    SELECT DISTINCT coalesce(r.new, c) FROM unnest(t.{column}) c
                      LEFT JOIN stage_remap r ON r.old = c ORDER BY 1)::varchar[]
                 WHERE t.{column} && (SELECT array_agg(old)::varchar[] FROM stage_remap)"""
        ).rowcount
        report.rows_remapped[f"{table}.{column}"] = count
    table, column = MERGED
    count = conn.execute(
        f"""WITH gone AS (DELETE FROM {table} e USING stage_remap r WHERE e.{column} = r.old
                          RETURNING e.month, r.new AS commune_code, e.specialism, e.collectivite_code, e.searches)
            INSERT INTO {table} (month, commune_code, specialism, collectivite_code, searches)
            SELECT month, commune_code, specialism, min(collectivite_code), sum(searches) FROM gone
             GROUP BY month, commune_code, specialism
            ON CONFLICT (month, commune_code, specialism) DO UPDATE
               SET searches = {table}.searches + EXCLUDED.searches"""
    ).rowcount
    report.rows_remapped[f"{table}.{column}"] = count


def _recompute(conn: psycopg.Connection, report: RefreshReport, left: list[str]) -> None:
    """What is derived from commune boundaries and points: départements and collectivités, the areas
    naming a changed commune (or its département), public points of locations there."""
    changed = sorted({*report.added, *report.redrawn, *(r.new_code for r in report.remaps if r.new_code)})
    departements = sorted(
        {
            *left,
            *(
                row[0]
                for row in conn.execute(
                    "SELECT DISTINCT departement_code FROM commune WHERE code = ANY(%s)", (changed,)
                ).fetchall()
            ),
        }
    )
    with conn.cursor() as cur:
        dissolve(cur, departements)
    services = [
        row[0]
        for row in conn.execute(
            """SELECT DISTINCT a.service_id FROM service_area a
                WHERE a.communes && %(codes)s::varchar[]
                   OR a.departements && (SELECT array_agg(DISTINCT departement_code)::varchar[]
                                           FROM commune WHERE code = ANY(%(codes)s))""",
            {"codes": changed},
        ).fetchall()
    ]
    if services:
        for statement in REFRESH:
            conn.execute(statement, {"service_ids": services, "area_ids": None, "all": True})
    # A confidential location stands at its commune's point, set by trigger on write.
    conn.execute("UPDATE location SET commune_code = commune_code WHERE commune_code = ANY(%s)", (changed,))
    # Their coverage distances are dropped: statistics probe missing rows live until the worker's
    # nightly `coverage.refresh` computes them again (a full computation here takes seconds per run).
    conn.execute("DELETE FROM commune_coverage WHERE commune_code = ANY(%s)", (changed,))
