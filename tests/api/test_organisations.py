"""Organisations, the CRIP of a collectivité, the specialism taxonomy."""

import uuid
from datetime import UTC, datetime

import httpx
import pytest
from sqlmodel.ext.asyncio.session import AsyncSession

from api.schemas import OrganisationDetail, OrganisationList, Taxonomy
from directory.taxonomy import SLUGS, VERSION
from tests import factories


async def test_taxonomy(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    body = Taxonomy.model_validate((await client.get("/v1/specialisms", headers=specialist)).json())
    assert body.version == VERSION
    assert {item.slug for item in body.items} == SLUGS
    assert len(SLUGS) == 16 + 10  # the specialised ones and the general ones data·inclusion maps to
    assert sum(slug.startswith("general-") for slug in SLUGS) == 10
    crip = next(item for item in body.items if item.slug == "crip")
    assert crip.label_fr == "Recueil des informations préoccupantes (CRIP)"
    shelter = next(item for item in body.items if item.slug == "emergency-shelter")
    assert shelter.data_inclusion == "logement-hebergement--rechercher-une-solution-dhebergement-temporaire"


async def test_the_crip_of_a_collectivite(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    response = await client.get("/v1/collectivites/69M/crip", headers=specialist)
    assert response.status_code == 200
    crip = OrganisationDetail.model_validate(response.json())
    assert crip.name == "Cellule de recueil des informations préoccupantes — Métropole de Lyon"
    assert crip.collectivite is not None
    assert crip.collectivite.code == "69M"
    assert crip.seat is not None
    assert crip.seat.name == "Lyon"
    assert (crip.verification, crip.contact_state, crip.phone, crip.email) == ("unverified", "missing", None, None)
    assert [s.specialisms for s in crip.services] == [["crip"]]
    missing = await client.get("/v1/collectivites/99D/crip", headers=specialist)
    assert missing.status_code == 404


async def test_collective_members_are_listed_unverified_without_contacts(
    client: httpx.AsyncClient, specialist: dict[str, str]
) -> None:
    items: list[dict] = []  # type: ignore[type-arg]
    url: str | None = "/v1/organisations?collective=ensemble-contre-la-traite&limit=10"
    while url:
        body = OrganisationList.model_validate((await client.get(url, headers=specialist)).json())
        items += [item.model_dump() for item in body.items]
        url = body.links[0]["href"] if body.links else None
    assert len(items) == 24
    names = [item["name"] for item in items]
    assert names == sorted(names)
    assert "Agir Contre la Prostitution des Enfants" in names
    assert all(item["verification"] == "unverified" for item in items)
    assert all(item["phone"] is None and item["email"] is None and item["website"] is None for item in items)
    hors_la_rue = next(item for item in items if item["name"] == "Hors la Rue")
    assert hors_la_rue["seat"] == {"code": "93048", "name": "Montreuil"}
    secours = next(item for item in items if item["name"].startswith("Secours Catholique"))
    assert secours["seat"]["code"] == "75056"  # 75107 (Paris 7e) in the source


async def test_regional_member_covers_its_region_only(client: httpx.AsyncClient, specialist: dict[str, str]) -> None:
    body = (
        await client.get(
            "/v1/services/search",
            headers=specialist,
            params={"lat": 43.6, "lon": 1.44, "specialism": "unaccompanied-minors", "radius_km": 5},
        )
    ).json()
    assert [f["properties"]["organisation"]["name"] for f in body["features"]] == []
    body = (
        await client.get(
            "/v1/services/search",
            headers=specialist,
            params={"lat": 48.85, "lon": 2.35, "specialism": "unaccompanied-minors", "radius_km": 5},
        )
    ).json()
    hors_la_rue = [f for f in body["features"] if f["properties"]["organisation"]["name"] == "Hors la Rue"]
    assert len(hors_la_rue) == 1
    assert hors_la_rue[0]["properties"]["covers"] is True
    assert hors_la_rue[0]["properties"]["location_precision"] == "commune"


async def test_organisation_detail_lists_current_services(
    client: httpx.AsyncClient, specialist: dict[str, str], session: AsyncSession
) -> None:
    org = await factories.organisation(session, name="Asso Détail", siren="123456789")
    kept = await factories.service(session, org, name="B service")
    gone = await factories.service(session, org, name="A archived", archived_at=datetime.now(UTC))
    body = OrganisationDetail.model_validate(
        (await client.get(f"/v1/organisations/{org.id}", headers=specialist)).json()
    )
    assert [s.id for s in body.services] == [kept.id]
    assert gone.id not in [s.id for s in body.services]
    assert body.identifiers == {"siren": "123456789", "siret": None, "rna": None}


async def test_deactivated_organisations_are_hidden_except_from_admins(
    client: httpx.AsyncClient,
    auth,
    session: AsyncSession,  # type: ignore[no-untyped-def]
) -> None:
    org = await factories.organisation(session, name="Asso fermée", deactivated_at=datetime.now(UTC))
    assert (await client.get(f"/v1/organisations/{org.id}", headers=auth("specialist"))).status_code == 404
    assert (await client.get(f"/v1/organisations/{org.id}", headers=auth("admin"))).status_code == 200


@pytest.mark.parametrize(
    ("path", "status"),
    [
        (f"/v1/organisations/{uuid.uuid4()}", 404),
        ("/v1/organisations/123", 422),
        ("/v1/organisations?kind=mafia", 422),
        ("/v1/organisations?cursor=zzz", 422),
        ("/v1/organisations?collective=A%20B", 422),
    ],
)
async def test_bad_organisation_requests(
    client: httpx.AsyncClient, specialist: dict[str, str], path: str, status: int
) -> None:
    response = await client.get(path, headers=specialist)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
