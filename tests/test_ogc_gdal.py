"""GDAL's OGC API – Features driver (OAPIF, `ogrinfo` from the distribution's gdal-bin) opens /ogc on a
real server with a bearer header: it lists the collections and reads every page of the services in a
box, following the `next` links, and sees the safe house at its commune's point only."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from geoalchemy2.elements import WKTElement
from sqlmodel import Session, create_engine, select

from api.app import build_token_service
from api.cluster import Cluster
from api.settings import Settings
from directory.access import Role
from directory.models import Location, Organisation, OrganisationKind, Service, Visibility
from geo.models import Commune
from tests.database import create_test_database
from tests.processes import Server

SAINT_FLOUR = "15187"
MARSEILLE = "13055"
# Generous: a loaded CI machine runs the other tests beside this one.
OGRINFO_TIMEOUT = 120


@dataclass
class Directory:
    server: Server
    token: str
    in_box: set[str]  # the listed services whose public point lies in BOX
    safe_house: str
    commune_point: tuple[float, float]
    box: tuple[float, float, float, float]


@pytest.fixture(scope="module")
def directory(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Directory]:
    name = create_test_database(cluster, suffix="_gdal")
    var = tmp_path_factory.mktemp("gdal")
    try:
        engine = create_engine(cluster.url(name))
        with Session(engine) as session:
            commune = session.exec(select(Commune).where(Commune.code == SAINT_FLOUR)).one()
            point = session.exec(select(Commune.point.ST_X(), Commune.point.ST_Y()).where(Commune.code == SAINT_FLOUR))
            lon, lat = point.one()
            assert commune.departement_code == "15"
            org = Organisation(name="Asso du Cantal", kind=OrganisationKind.association)
            south = Organisation(name="Asso du Sud", kind=OrganisationKind.association)
            session.add_all([org, south])
            session.flush()
            now = datetime.now(UTC)

            def place(at: tuple[float, float], commune: str, **fields: object) -> Location:
                location = Location(
                    organisation_id=org.id if commune == SAINT_FLOUR else south.id,
                    commune_code=commune,
                    point=WKTElement(f"POINT({at[0]} {at[1]})", srid=4326),
                    **fields,
                )
                session.add(location)
                session.flush()
                return location

            def service(location: Location | None, name: str) -> str:
                row = Service(
                    organisation_id=location.organisation_id if location else org.id,
                    location_id=location.id if location else None,
                    name=name,
                    specialisms=["legal-support"],
                    schedule={"mode": "always"},
                    last_verified_at=now,
                )
                session.add(row)
                session.flush()
                return str(row.id)

            public = [service(place((lon + 0.002 * n, lat + 0.001 * n), SAINT_FLOUR), f"Accueil {n}") for n in range(4)]
            house = place(
                (3.0600, 45.0500),  # its real place, in the north-west of the commune: never published
                SAINT_FLOUR,
                visibility=Visibility.confidential,
                address="7 impasse Secrète",
                front_door_phone="+33 4 00 00 00 01",
            )
            safe_house = service(house, "Mise à l'abri")
            service(place((5.3698, 43.2965), MARSEILLE), "Accueil Sud")  # far away
            service(None, "Ligne d'écoute")  # no location: no box holds it
            session.commit()
        engine.dispose()
        server = Server(cluster.app_url(name), var)
        tokens = build_token_service(Settings(var_dir=var))  # writes the key the server then loads
        token = tokens.issue(subject="gis-user", role=Role.department, collectivite_code="15D", ttl=900)
        server.start()
        try:
            yield Directory(
                server=server,
                token=token,
                in_box={*public, safe_house},
                safe_house=safe_house,
                commune_point=(lon, lat),
                box=(lon - 0.05, lat - 0.05, lon + 0.05, lat + 0.05),
            )
        finally:
            server.stop()
    finally:
        cluster.drop_database(name)


def _ogrinfo(directory: Directory, *args: str, layer: str | None = None) -> str:
    assert shutil.which("ogrinfo"), "ogrinfo is missing: install the distribution's gdal-bin (make test does)"
    command = [
        "ogrinfo",
        "-ro",
        "--config",
        "GDAL_HTTP_HEADERS",
        f"Authorization: Bearer {directory.token}",
        "--config",
        "GDAL_HTTP_TIMEOUT",
        "60",
        *args,
        f"OAPIF:{directory.server.base}/ogc",
        *([layer] if layer else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=OGRINFO_TIMEOUT, check=False)  # noqa: S603
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_gdal_lists_the_collections(directory: Directory) -> None:
    output = _ogrinfo(directory, "-so", "-q")
    assert [line.split(":", 1)[1].strip() for line in output.splitlines() if line[:1].isdigit()] == [
        "services (title: Services) (Point)",
        "regions (title: Régions) (Multi Polygon)",
        "departements (title: Départements) (Multi Polygon)",
        "collectivites (title: Collectivités) (Multi Polygon)",
        "communes (title: Communes) (Multi Polygon)",
    ]


def _features(output: str) -> dict[str, dict[str, str]]:
    """ogrinfo's features: id → {field: value, "POINT": "lon lat"}."""
    features = {}
    for block in re.split(r"^OGRFeature\(services\):\d+$", output, flags=re.MULTILINE)[1:]:
        fields = dict(re.findall(r"^  (\w+) \([\w()]+\) = (.*)$", block, flags=re.MULTILINE))
        point = re.search(r"^  POINT \((.*)\)$", block, flags=re.MULTILINE)
        fields["POINT"] = point[1] if point else ""
        features[fields["id"]] = fields
    return features


def test_gdal_reads_every_page_of_the_services_in_a_box(directory: Directory) -> None:
    # Two features a page: the five services in the box take three pages, the last two reached by
    # following `next` links; the phone line (no geometry) and the service in Marseille are not in it.
    output = _ogrinfo(directory, "-oo", "PAGE_SIZE=2", "-spat", *(str(v) for v in directory.box), layer="services")
    features = _features(output)
    assert set(features) == directory.in_box
    house = features[directory.safe_house]
    lon, lat = (float(value) for value in house["POINT"].split())
    assert (lon, lat) == pytest.approx(directory.commune_point, abs=1e-6)
    assert house["location_precision"] == "commune"
    assert house["address"] == "(null)"
    assert house["front_door_phone"] == "+33 4 00 00 00 01"
    assert "Secrète" not in output
    assert "45.05" not in house["POINT"]
