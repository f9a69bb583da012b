"""`maillage import data-inclusion`: a fixture built from the schema, bad rows included, then a changed
one; everything runs in one transaction that is rolled back, except the end-to-end test which has a
database of its own."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from typer.testing import CliRunner

from api.cli import app as cli
from api.cluster import Cluster
from api.settings import Settings
from directory.access import Role
from directory.imports import ImportReport
from sync import data_inclusion
from tests.database import create_test_database, plain
from tests.sync import data_inclusion_fixture as fixture

SERVICES = """SELECT v.source_id, v.name, v.specialisms, v.audiences, v.genders, v.channels, v.schedule,
                     v.archived_at IS NOT NULL, o.name, o.source_id, l.commune_code, l.point_precision, l.visibility,
                     ST_X(l.point), ST_Y(l.point), v.covers_national, v.coverage IS NOT NULL, v.version
                FROM service v JOIN organisation o ON o.id = v.organisation_id
                LEFT JOIN location l ON l.id = v.location_id
               WHERE v.source = 'data-inclusion' ORDER BY v.source_id"""


@pytest.fixture
def conn(owner_url: str) -> Iterator[psycopg.Connection]:
    with psycopg.connect(plain(owner_url)) as connection:
        connection.execute(
            """INSERT INTO organisation (id, name, kind, siret, verification)
               VALUES (gen_random_uuid(), 'Association partenaire', 'association', %s, 'unverified')""",
            (fixture.SIRET_PARTNER,),
        )
        yield connection
        connection.rollback()


def _import(conn: psycopg.Connection, tmp_path: Path, structures: list[Any], services: list[Any]) -> ImportReport:
    directory = fixture.write(tmp_path / uuid.uuid4().hex, structures, services)
    return data_inclusion.run(conn, data_inclusion.open_directory(directory))


def _services(conn: psycopg.Connection) -> dict[str, tuple[Any, ...]]:
    return {row[0]: row[1:] for row in conn.execute(SERVICES).fetchall()}


def test_a_first_import_creates_what_is_in_scope_and_rejects_bad_rows_with_their_reason(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    report = _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)

    assert report.read == {"structures": 5, "services": 10}
    assert (report.organisations.created, report.organisations.updated) == (2, 0)
    assert (report.locations.created, report.services.created, report.services.updated) == (2, 3, 0)
    assert dict(report.rejected) == {
        "invalid structure": 1,
        "invalid service": 1,
        "unknown commune code": 1,
        "its structure is missing or was rejected": 1,
        "zone_eligibilite names an unknown EPCI": 1,
        "no place": 1,
    }
    assert report.rejected_examples["invalid structure"] == ["dora--s4: nom: String should have at least 3 characters"]
    assert report.rejected_examples["unknown commune code"] == ["dora--v6: 99999"]
    assert report.rejected_examples["zone_eligibilite names an unknown EPCI"] == ["dora--v8: 999999999"]
    assert dict(report.skipped) == {
        "no thématique within Maillage's scope": 1,
        "its structure is already an organisation in Maillage (same SIRET)": 1,
    }
    assert report.left_out["thematiques: trouver-un-emploi--maintien-dans-lemploi"] == 1
    assert report.left_out["structure site_web: not an https URL"] == 2 - 1  # s1 only (s2 has none)
    assert report.left_out["horaires_accueil: a comment qualifies the hours (by appointment, on call…)"] == 1
    assert report.left_out["point outside its commune (the commune's point stands in)"] == 1

    rows = _services(conn)
    assert sorted(rows) == ["cd93--v3", "dora--v1", "emplois--v2"]
    v1 = rows["dora--v1"]
    assert v1[:5] == (
        "Hébergement d'urgence des familles",
        ["general-temporary-housing"],
        ["entourage"],
        [],  # families and women: not for women only
        ["in_person"],
    )
    assert v1[5] == {
        "mode": "weekly",
        "weekly": {day: [["09:00", "12:00"], ["14:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")},
        "closed_on_public_holidays": True,
        "exceptions": [],
    }
    # Two structures with one SIRET are one organisation, named by the one updated last.
    assert v1[6:9] == (False, "CHRS Les Tilleuls", f"siret:{fixture.SIRET_TILLEULS}")
    assert v1[9:12] == ("93066", "exact", "public")
    assert (round(v1[12], 4), round(v1[13], 4)) == fixture.SAINT_DENIS
    assert v1[14:16] == (False, True)

    v2 = rows["emplois--v2"]
    assert v2[:6] == (
        "Écoute psychologique à distance",
        ["general-mental-health"],  # never psychotrauma-care
        ["young_adult"],
        [],
        ["phone"],
        {"mode": "unknown"},
    )
    assert v2[7] == "CHRS Les Tilleuls"  # the same organisation as v1
    assert v2[9] is None  # received nowhere: no location
    area = conn.execute(
        """SELECT a.communes, a.departements, a.national FROM service_area a JOIN service v ON v.id = a.service_id
            WHERE v.source_id = 'emplois--v2' AND a.archived_at IS NULL"""
    ).fetchall()
    assert area == [(fixture.EPCI_COMMUNES, [], False)]

    v3 = rows["cd93--v3"]
    assert v3[1:6] == (["general-legal-matters"], [], [], ["in_person"], {"mode": "always"})
    # An arrondissement's code is its commune's; a point outside the commune gives way to the commune's.
    assert v3[9:12] == ("75056", "commune", "public")
    paris = conn.execute("SELECT ST_X(point), ST_Y(point) FROM commune WHERE code = '75056'").fetchone()
    assert (v3[12], v3[13]) == tuple(paris)
    assert v3[14] is True  # zone_eligibilite "france"

    provenance = conn.execute(
        """SELECT DISTINCT source, source_updated_on::text, imported_at IS NOT NULL, d.licence
             FROM service v JOIN data_source d ON d.slug = v.source WHERE v.source_id = 'dora--v1'"""
    ).fetchall()
    assert provenance == [("data-inclusion", "2026-10-15", True, "Licence Ouverte 2.0 (Etalab)")]
    # The partner that joined directly was left alone: no second organisation with its SIRET.
    assert conn.execute("SELECT count(*) FROM organisation WHERE siret = %s", (fixture.SIRET_PARTNER,)).fetchone() == (
        1,
    )
    # Searchable at once: the search projection holds the imported services.
    points = conn.execute(
        """SELECT count(*) FROM search_point p JOIN service v ON v.id = p.service_id
            WHERE v.source = 'data-inclusion'"""
    ).fetchone()
    assert points == (2,)


def test_a_re_import_of_the_same_extract_changes_nothing(conn: psycopg.Connection, tmp_path: Path) -> None:
    _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)
    before = _services(conn)
    revisions = conn.execute("SELECT count(*) FROM listing_revision").fetchone()

    again = _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)

    assert (again.organisations.created, again.organisations.updated, again.organisations.archived) == (0, 0, 0)
    assert (again.locations.created, again.locations.updated, again.locations.archived) == (0, 0, 0)
    assert (again.services.created, again.services.updated, again.services.archived, again.services.unchanged) == (
        0,
        0,
        0,
        3,
    )
    assert _services(conn) == before  # versions included
    assert conn.execute("SELECT count(*) FROM listing_revision").fetchone() == revisions


def test_a_changed_extract_updates_archives_and_never_overwrites_what_maillage_manages(
    conn: psycopg.Connection, tmp_path: Path
) -> None:
    _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)
    # The Point justice's people now manage their listing in Maillage (a partner changed it).
    conn.execute(
        """INSERT INTO listing_revision (entity, entity_id, service_id, organisation_id, action, changes,
                                         actor_subject, actor_role)
           SELECT 'service', v.id, v.id, v.organisation_id, 'updated', '{"capacity": {"new": "full"}}',
                  'partner-user', 'partner'
             FROM service v WHERE v.source_id = 'cd93--v3'"""
    )
    before = _services(conn)

    structures, services = fixture.changed()
    report = _import(conn, tmp_path, structures, services)

    assert (report.services.created, report.services.updated, report.services.archived) == (1, 1, 1)
    assert report.services.kept == 1
    assert report.rejected["invalid service"] == 0
    rows = _services(conn)
    assert rows["dora--v1"][0] == "Hébergement d'urgence des familles (Saint-Denis)"
    assert rows["dora--v1"][16] == before["dora--v1"][16] + 1  # a new version: ETags held by clients go stale
    assert rows["emplois--v2"][6] is True  # archived: no longer in the source
    assert rows["cd93--v3"] == before["cd93--v3"]  # managed in Maillage: untouched
    assert rows["dora--v5"][1] == ["general-health-care"]
    actions = conn.execute(
        """SELECT v.source_id, r.action, r.actor_subject FROM listing_revision r JOIN service v ON v.id = r.service_id
            WHERE v.source = 'data-inclusion' AND r.actor_subject = 'import:data-inclusion'
            ORDER BY r.id"""
    ).fetchall()
    assert [a for a in actions if a[0] in ("emplois--v2", "dora--v5")] == [
        ("emplois--v2", "imported", "import:data-inclusion"),
        ("dora--v5", "imported", "import:data-inclusion"),
        ("emplois--v2", "archived", "import:data-inclusion"),
    ]

    # A row broken at the source keeps its last import rather than being archived.
    structures, services = fixture.changed()
    next(s for s in services if s["id"] == "dora--v1")["date_maj"] = "2099-12-31"
    broken = _import(conn, tmp_path, structures, services)
    assert broken.rejected == {**dict(broken.rejected), "invalid service": 1}
    assert broken.services.archived == 0
    assert _services(conn)["dora--v1"][6] is False


def test_an_imported_location_can_never_be_confidential(conn: psycopg.Connection, tmp_path: Path) -> None:
    _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)
    with pytest.raises(psycopg.errors.CheckViolation, match="imported_public"):
        conn.execute("UPDATE location SET visibility = 'confidential' WHERE source = 'data-inclusion'")


def test_a_file_that_is_not_the_extract_stops_the_import_and_changes_nothing(owner_url: str, tmp_path: Path) -> None:
    (tmp_path / "structures.json").write_text('{"not": "an array"}')
    (tmp_path / "services.json").write_text("[]")
    with psycopg.connect(plain(owner_url)) as conn:
        count = conn.execute("SELECT count(*) FROM organisation").fetchone()
        with pytest.raises(ValueError, match="JSON array of objects"):
            data_inclusion.run(conn, data_inclusion.open_directory(tmp_path))
        conn.rollback()
        assert conn.execute("SELECT count(*) FROM organisation").fetchone() == count
    (tmp_path / "services.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing services\.json"):
        data_inclusion.open_directory(tmp_path)


def test_the_api_is_read_page_by_page_with_the_token(conn: psycopg.Connection) -> None:
    seen: list[tuple[str, str | None, str | None]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        kind = request.url.path.rsplit("/", 1)[-1]
        page = int(request.url.params["page"])
        seen.append((kind, request.url.params.get("page"), request.headers.get("authorization")))
        rows = fixture.STRUCTURES if kind == "structures" else fixture.SERVICES
        size = 3
        chunk = rows[(page - 1) * size : page * size]
        pages = -(-len(rows) // size)
        return httpx.Response(
            200, json={"items": chunk, "total": len(rows), "page": page, "size": size, "pages": pages}
        )

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        extract = data_inclusion.open_api("https://api.data.inclusion.test/api/v1", client, "secret-token")
        report = data_inclusion.run(conn, extract)
    assert report.read == {"structures": 5, "services": 10}
    assert report.services.created == 3
    assert seen == [("structures", "1", "Bearer secret-token"), ("structures", "2", "Bearer secret-token")] + [
        ("services", str(page), "Bearer secret-token") for page in (1, 2, 3, 4)
    ]


def test_an_api_error_stops_the_import(conn: psycopg.Connection) -> None:
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(401))) as client:
        extract = data_inclusion.open_api("https://api.data.inclusion.test/api/v1", client, None)
        with pytest.raises(RuntimeError, match="answered 401 for structures page 1"):
            data_inclusion.run(conn, extract)


def test_the_command_imports_reports_and_the_listings_are_marked_in_search(
    cluster: Cluster, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end on a database of its own: the command commits, a specialist's search shows the
    imported listings as such, with their source and licence."""
    import asyncio

    from api.app import create_app

    name = create_test_database(cluster, suffix="_import")
    try:
        monkeypatch.setenv("DATABASE_URL", cluster.app_url(name))
        monkeypatch.setenv("MAILLAGE_OWNER_DATABASE_URL", cluster.url(name))
        monkeypatch.setenv("MAILLAGE_VAR_DIR", str(settings.var_dir))
        directory = fixture.write(tmp_path / "extract", fixture.STRUCTURES, fixture.SERVICES)
        runner = CliRunner()
        dry = runner.invoke(cli, ["import", "data-inclusion", str(directory), "--dry-run"])
        assert dry.exit_code == 0, dry.output
        assert "dry run: nothing kept" in dry.output
        result = runner.invoke(cli, ["import", "data-inclusion", str(directory)])
        assert result.exit_code == 0, result.output
        assert "read 10 services, 5 structures" in result.output
        assert "services       created      4  updated      0" in result.output  # and v9: no partner here
        assert "rejected: 1 × no place — e.g. dora--v10: neither a commune" in result.output
        missing = runner.invoke(cli, ["import", "data-inclusion", str(tmp_path / "nowhere")])
        assert missing.exit_code == 1
        assert "missing structures.json, services.json" in missing.output

        async def search() -> dict[str, Any]:
            application = create_app(settings.model_copy(update={"database_url": cluster.app_url(name)}))
            async with application.router.lifespan_context(application):
                token = application.state.tokens.issue(subject="specialist-1", role=Role.specialist)
                transport = httpx.ASGITransport(app=application)
                async with httpx.AsyncClient(transport=transport, base_url="http://maillage.test") as client:
                    response = await client.get(
                        "/v1/services/search",
                        params={"commune": "93066", "specialism": "general-temporary-housing"},
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    assert response.status_code == 200, response.text
                    return json.loads(response.text)

        body = asyncio.run(search())
        imported = [f for f in body["features"] if f["properties"]["name"] == "Hébergement d'urgence des familles"]
        assert len(imported) == 1
        assert imported[0]["properties"]["source"] == {
            "name": "data·inclusion — référentiel de l'offre d'insertion",
            "licence": "Licence Ouverte 2.0 (Etalab)",
            "url": "https://data.inclusion.gouv.fr/",
            "updated_on": "2026-10-15",
        }
    finally:
        cluster.drop_database(name)


def test_a_managed_listing_never_moves_when_its_structure_is_rekeyed(conn: psycopg.Connection, tmp_path: Path) -> None:
    """The Point justice gains a SIRET at the source (its organisation's key changes) after its people
    took it over in Maillage: its service stays with them, unchanged."""
    _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)
    conn.execute(
        """INSERT INTO listing_revision (entity, entity_id, service_id, organisation_id, action, changes,
                                         actor_subject, actor_role)
           SELECT 'service', v.id, v.id, v.organisation_id, 'updated', '{}', 'partner-user', 'partner'
             FROM service v WHERE v.source_id = 'cd93--v3'"""
    )
    before = _services(conn)["cd93--v3"]
    structures, services = fixture.changed()
    next(s for s in structures if s["id"] == "cd93--s3")["siret"] = "33333333300033"
    report = _import(conn, tmp_path, structures, services)
    assert _services(conn)["cd93--v3"] == before
    assert report.services.kept == 1


def test_structures_without_a_service_in_scope_make_no_organisation(conn: psycopg.Connection, tmp_path: Path) -> None:
    structures = [{"source": "dora", "id": "dora--emploi", "nom": "Agence pour l'emploi", "date_maj": "2026-10-01"}]
    services = [
        {
            "source": "dora",
            "id": "dora--cv",
            "structure_id": "dora--emploi",
            "nom": "Atelier CV",
            "description": "Rédiger son CV en une matinée.",
            "date_maj": "2026-10-01",
            "thematiques": ["preparer-sa-candidature--realiser-un-cv-et-ou-une-lettre-de-motivation"],
        }
    ]
    report = _import(conn, tmp_path, structures, services)
    assert report.organisations.created == 0
    assert conn.execute("SELECT count(*) FROM organisation WHERE source = 'data-inclusion'").fetchone() == (0,)


def test_a_duplicate_structure_id_is_rejected_not_fatal(conn: psycopg.Connection, tmp_path: Path) -> None:
    report = _import(conn, tmp_path, [*fixture.STRUCTURES, fixture.STRUCTURES[2]], fixture.SERVICES)
    assert report.rejected["duplicate structure id in the source"] == 1
    assert report.services.created == 3


def test_an_extract_missing_most_listings_archives_nothing_unless_asked(
    conn: psycopg.Connection, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from directory import imports

    _import(conn, tmp_path, fixture.STRUCTURES, fixture.SERVICES)
    monkeypatch.setattr(imports, "MASS_ARCHIVE_MIN", 1)
    directory = fixture.write(tmp_path / "partial", fixture.STRUCTURES, fixture.SERVICES[:1])
    with pytest.raises(imports.MassArchive, match="would archive 2 of the 3 services"), conn.transaction():
        data_inclusion.run(conn, data_inclusion.open_directory(directory))
    report = data_inclusion.run(conn, data_inclusion.open_directory(directory), allow_mass_archive=True)
    assert report.services.archived == 2


def test_a_short_read_of_the_api_stops_the_import(conn: psycopg.Connection) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"items": fixture.STRUCTURES[:2], "total": 5, "page": 1, "size": 2, "pages": 1})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        extract = data_inclusion.open_api("https://api.data.inclusion.test/api/v1", client, None)
        with pytest.raises(RuntimeError, match="announced 5 structures and gave 2"):
            data_inclusion.run(conn, extract)
    with pytest.raises(ValueError, match="https only"):
        data_inclusion.open_api("http://api.data.inclusion.test/api/v1", httpx.Client(), "token")


def _service_row(**fields: Any) -> dict[str, Any]:
    return {
        "source": "dora",
        "id": "dora--x",
        "structure_id": "dora--s1",
        "nom": "Un service",
        "description": "Un service décrit pour le test.",
        "date_maj": "2026-10-01",
        "thematiques": ["logement-hebergement--rechercher-une-solution-dhebergement-temporaire"],
        "zone_eligibilite": ["93"],
        **fields,
    }


@pytest.mark.parametrize(
    ("publics", "genders", "age_min"),
    [
        (["femmes", "personnes-en-situation-durgence"], ["female"], None),  # a women's shelter: not for a boy
        (["femmes", "familles"], [], None),  # families include fathers and sons
        (["seniors"], [], 18),  # adults only: never a child's door
        (["demandeurs-emploi", "actifs"], [], 18),
        (["jeunes"], [], None),
        (["tous-publics"], [], None),
    ],
)
def test_publics_restrict_who_a_service_is_shown_for(
    publics: list[str], genders: list[str], age_min: int | None
) -> None:
    mapped = data_inclusion.map_service(_service_row(publics=publics), ImportReport())
    assert not isinstance(mapped, (type(None), data_inclusion.Rejection))
    assert (mapped.genders, mapped.age_min) == (genders, age_min)


def test_the_source_s_conditions_stay_readable_and_a_catalogue_page_is_no_channel() -> None:
    report = ImportReport()
    mapped = data_inclusion.map_service(
        _service_row(
            publics_precisions="Jeunes femmes de 18 à 25 ans",
            conditions_acces="Sur orientation du SIAO",
            modes_accueil=["a-distance"],
            lien_source="https://dora.inclusion.gouv.fr/services/x",
        ),
        report,
    )
    assert not isinstance(mapped, (type(None), data_inclusion.Rejection))
    assert mapped.description == (
        "Un service décrit pour le test.\n\nPublics : Jeunes femmes de 18 à 25 ans\n\n"
        "Conditions d'accès : Sur orientation du SIAO"
    )
    assert mapped.channels == []  # reachable neither by phone nor by a link to mobilise it
    assert mapped.website == "https://dora.inclusion.gouv.fr/services/x"
    assert report.left_out["modes_accueil: a-distance without a phone, link or email"] == 1
