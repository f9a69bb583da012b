"""`maillage territories refresh` on a synthetic release: Ayse (74024) merges into Bonneville (74042)
on 1 January 2027; Marignier (74164) leaves the list with no event (never guessed: kept, reported)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from sync import territories
from tests.database import plain

KEPT, MERGED, VANISHED = "74042", "74024", "74164"
HEADER = "TYPECOM,COM,REG,DEP,CTCD,ARR,TNCC,NCC,NCCENR,LIBELLE,CAN,COMPARENT"
EVENTS = (
    "MOD,DATE_EFF,TYPECOM_AV,COM_AV,TNCC_AV,NCC_AV,NCCENR_AV,LIBELLE_AV,"
    "TYPECOM_AP,COM_AP,TNCC_AP,NCC_AP,NCCENR_AP,LIBELLE_AP\n"
    """32,2027-01-01,COM,74024,0,AYSE,Ayse,Ayse,COM,74042,0,BONNEVILLE,Bonneville,Bonneville
32,2027-01-01,COM,74042,0,BONNEVILLE,Bonneville,Bonneville,COM,74042,0,BONNEVILLE,Bonneville,Bonneville
32,2027-01-01,COM,74024,0,AYSE,Ayse,Ayse,COMD,74024,0,AYSE,Ayse,Ayse
"""
)


@pytest.fixture
def conn(owner_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(plain(owner_url)) as connection:
        yield connection
        connection.rollback()


def _release(conn: psycopg.Connection, directory: Path) -> tuple[Path, Path, Path]:
    """Today's communes minus the merged and the vanished one; the kept one redrawn as the union."""
    directory.mkdir(exist_ok=True)
    communes = directory / "v_commune_2027.csv"
    with communes.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER.split(","))
        for code, name, departement in conn.execute(
            "SELECT code, name, departement_code FROM commune WHERE code NOT IN (%s, %s) ORDER BY code",
            (MERGED, VANISHED),
        ):
            writer.writerow(["COM", code, "", departement, "", "", "0", name.upper(), name, name, "", ""])
    events = directory / "v_mvt_commune_2027.csv"
    events.write_text(EVENTS, encoding="utf-8")
    union = conn.execute(
        "SELECT ST_AsGeoJSON(ST_Union(boundary)) FROM commune WHERE code IN (%s, %s)", (KEPT, MERGED)
    ).fetchone()
    boundaries = directory / "communes.geojson"
    feature = {"type": "Feature", "properties": {"INSEE_COM": KEPT}, "geometry": json.loads(union[0])}
    boundaries.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    return communes, events, boundaries


def test_a_merger_is_remapped_everywhere_and_the_reference_year_moves(conn: psycopg.Connection, tmp_path: Path) -> None:
    merged_point = conn.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = %s", (MERGED,)).fetchone()
    organisation = conn.execute(
        """INSERT INTO organisation (id, name, kind, verification, seat_commune_code)
           VALUES (gen_random_uuid(), 'Association d''Ayse', 'association', 'unverified', %s) RETURNING id""",
        (MERGED,),
    ).fetchone()[0]
    location = conn.execute(
        """INSERT INTO location (id, organisation_id, commune_code, point, visibility, front_door_phone)
           SELECT gen_random_uuid(), %s, code, point, 'confidential', '0450000000' FROM commune WHERE code = %s
           RETURNING id""",
        (organisation, MERGED),
    ).fetchone()[0]
    service = conn.execute(
        """INSERT INTO service (id, organisation_id, location_id, name, specialisms)
           VALUES (gen_random_uuid(), %s, %s, 'Accueil', '{emergency-shelter}') RETURNING id""",
        (organisation, location),
    ).fetchone()[0]
    conn.execute(
        "INSERT INTO service_area (id, service_id, communes) VALUES (gen_random_uuid(), %s, %s)",
        (service, [MERGED, KEPT, VANISHED]),
    )
    conn.execute(
        """INSERT INTO empty_search (month, commune_code, specialism, collectivite_code, searches)
           VALUES ('2026-11-01', %s, '', '74D', 3), ('2026-11-01', %s, '', '74D', 4)""",
        (MERGED, KEPT),
    )

    report = territories.refresh(
        conn,
        communes=territories.read_communes(_release(conn, tmp_path)[0]),
        boundaries=territories.read_boundaries(tmp_path / "communes.geojson"),
        events=(tmp_path / "v_mvt_commune_2027.csv").read_text().splitlines(keepends=True),
        year=2027,
        source="synthetic 2027",
    )

    assert [(r.old_code, r.new_code) for r in report.remaps] == [(MERGED, KEPT)]
    assert [(r.old_code, r.new_code) for r in report.unresolved] == [(VANISHED, None)]
    assert report.removed == [MERGED]
    assert (report.added, report.redrawn) == ([], [KEPT])
    assert report.rows_remapped["location.commune_code"] == 1
    assert report.rows_remapped["organisation.seat_commune_code"] == 1
    # Every stored code of Ayse is Bonneville's now; Marignier, unmapped, is kept as it was.
    assert conn.execute("SELECT seat_commune_code FROM organisation WHERE id = %s", (organisation,)).fetchone() == (
        KEPT,
    )
    assert conn.execute("SELECT commune_code FROM location WHERE id = %s", (location,)).fetchone() == (KEPT,)
    areas = conn.execute("SELECT communes FROM service_area WHERE service_id = %s", (service,)).fetchall()
    assert areas == [([KEPT, VANISHED],)]
    assert conn.execute(
        "SELECT commune_code, searches FROM empty_search WHERE month = '2026-11-01' AND collectivite_code = '74D'"
    ).fetchall() == [(KEPT, 7)]
    assert conn.execute(
        "SELECT code FROM commune WHERE code IN (%s, %s, %s) ORDER BY code", (MERGED, KEPT, VANISHED)
    ).fetchall() == [
        (KEPT,),
        (VANISHED,),
    ]
    # Ayse's old point now lies in Bonneville, and the service's coverage follows the new boundary.
    inside = conn.execute(
        """SELECT ST_Covers(c.boundary, ST_SetSRID(ST_MakePoint(%s, %s), 4326)),
                  ST_Covers(v.coverage, ST_SetSRID(ST_MakePoint(%s, %s), 4326))
             FROM commune c, service v WHERE c.code = %s AND v.id = %s""",
        (*merged_point, *merged_point, KEPT, service),
    ).fetchone()
    assert inside == (True, True)
    # The safe house stands at its (new) commune's point for everyone else.
    public = conn.execute(
        """SELECT ST_Equals(l.public_point, c.point) FROM location l JOIN commune c ON c.code = l.commune_code
            WHERE l.id = %s""",
        (location,),
    ).fetchone()
    assert public == (True,)
    assert conn.execute(
        "SELECT reference_year, version FROM reference_dataset WHERE name = 'territories'"
    ).fetchone() == (
        2027,
        "cog-2027",
    )
    with pytest.raises(ValueError, match="already those of 2027"):
        territories.refresh(conn, communes=[], boundaries=[], events=[], year=2027, source="again")


def test_boundaries_in_another_projection_are_refused_whole(conn: psycopg.Connection, tmp_path: Path) -> None:
    communes, events, _ = _release(conn, tmp_path)
    lambert = {
        "type": "Polygon",
        "coordinates": [[[950000, 6550000], [951000, 6550000], [951000, 6551000], [950000, 6550000]]],
    }
    boundaries = tmp_path / "lambert.geojson"
    feature = {"type": "Feature", "properties": {"INSEE_COM": KEPT}, "geometry": lambert}
    boundaries.write_text(json.dumps({"type": "FeatureCollection", "features": [feature]}))
    with pytest.raises(ValueError, match="1 boundaries are invalid or outside France in WGS 84"):
        territories.refresh(
            conn,
            communes=territories.read_communes(communes),
            boundaries=territories.read_boundaries(boundaries),
            events=events.read_text().splitlines(keepends=True),
            year=2027,
            source="wrong projection",
        )


def test_the_command_reports_and_a_dry_run_keeps_nothing(
    conn: psycopg.Connection, tmp_path: Path, database_url: str, owner_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    communes, events, boundaries = _release(conn, tmp_path)
    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("MAILLAGE_OWNER_DATABASE_URL", owner_url)
    arguments = ["territories", "refresh", "--year", "2027", "--communes", str(communes), "--events", str(events)]
    result = CliRunner().invoke(cli, [*arguments, "--boundaries", str(boundaries), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "territories of 2027 (dry run: nothing kept)" in result.output
    assert "communes: 0 added, 0 renamed, 1 redrawn, 1 removed" in result.output
    assert f"{MERGED} → {KEPT}: " in result.output
    assert f"kept {VANISHED}: no successor" in result.output
    with psycopg.connect(plain(owner_url)) as other:
        assert other.execute("SELECT reference_year FROM reference_dataset WHERE name = 'territories'").fetchone() == (
            2026,
        )
        assert other.execute("SELECT count(*) FROM commune WHERE code = %s", (MERGED,)).fetchone() == (1,)
    refused = CliRunner().invoke(cli, [*arguments, "--boundaries", str(tmp_path / "missing.geojson")])
    assert refused.exit_code == 1
    assert "no such file" in refused.output


def test_every_column_naming_a_commune_is_remapped(conn: psycopg.Connection) -> None:
    """Foreign keys to `commune`, from the catalogue: each is remapped, merged or recomputed."""
    rows = conn.execute(
        """SELECT c.conrelid::regclass::text, a.attname FROM pg_constraint c
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY(c.conkey)
            WHERE c.contype = 'f' AND c.confrelid = 'commune'::regclass"""
    ).fetchall()
    handled = {*territories.FOREIGN_KEYS, territories.MERGED, territories.RECOMPUTED}
    seats = {("departement", "seat_commune_code"), ("collectivite", "seat_commune_code")}  # codes without a key
    assert set(rows) == handled - seats
