"""Deny by default: every /v1 route declares its roles, and the table below is the reviewed policy.

Adding a route without updating POLICY fails here; so does a route whose declared roles differ.
"""

import uuid

import httpx
import pytest
from fastapi import APIRouter, FastAPI
from psycopg import AsyncConnection

from api.app import assert_policies, route_policies
from directory.access import Role
from sync.hsds import derived_id
from tests.api.test_authorization_matrix import MATRIX_ROUTES
from tests.api.test_own_listings import OWN_LISTING_ROUTES
from tests.api.test_pathways import PATHWAY_ROUTES

ALL = frozenset(Role)
WRITERS = frozenset({Role.partner, Role.admin})
ADMIN = frozenset({Role.admin})
SPECIALIST = frozenset({Role.specialist})
PARTNER = frozenset({Role.partner})
CASE_READERS = frozenset({Role.specialist, Role.partner})
ANALYSTS = frozenset({Role.department, Role.specialist, Role.admin})
PUBLIC = None  # outside /v1 and /ogc: no token, no data
DECLARED_PUBLIC: frozenset[Role] = frozenset()  # inside /v1, explicitly marked Public()
OGC_COLLECTIONS = ("services", "regions", "departements", "collectivites", "communes")
OGC_TAILS = ("", "/items", "/items/{feature_id}", "/queryables")
OGC_FEATURES = {"services": "{crip_service}", "regions": "11", "departements": "93", "collectivites": "93D"}

POLICY: dict[tuple[str, str], frozenset[Role] | None] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/.well-known/jwks.json"): PUBLIC,
    # The console's page and settings (tests/api/test_console_files.py): code, never data; it reads /v1 as its user.
    ("GET", "/console"): PUBLIC,
    ("GET", "/console/"): PUBLIC,
    ("GET", "/console/callback"): PUBLIC,
    ("GET", "/console/config.json"): PUBLIC,
    ("GET", "/v1/territories"): ALL,
    ("GET", "/v1/tiles/{z}/{x}/{y}.mvt"): ALL,
    ("GET", "/v1/me"): ALL,
    ("GET", "/v1/territories/resolve"): ALL,
    ("POST", "/v1/territories/resolve"): ALL,
    ("GET", "/v1/departements"): ALL,
    ("GET", "/v1/departements/{code}"): ALL,
    ("GET", "/v1/collectivites"): ALL,
    ("GET", "/v1/collectivites/{code}"): ALL,
    ("GET", "/v1/communes"): ALL,
    ("GET", "/v1/collectivites/{code}/crip"): ALL,
    ("GET", "/v1/services/search"): ALL,
    ("GET", "/v1/services/{service_id}"): ALL,
    ("GET", "/v1/organisations"): ALL,
    ("GET", "/v1/organisations/{organisation_id}"): ALL,
    ("GET", "/v1/specialisms"): ALL,
    ("GET", "/v1/hsds"): ALL,
    ("GET", "/v1/hsds/services"): ALL,
    ("GET", "/v1/hsds/services/{service_id}"): ALL,
    ("GET", "/v1/hsds/service_at_locations"): ALL,
    ("GET", "/v1/hsds/service_at_locations/{service_at_location_id}"): ALL,
    ("GET", "/v1/hsds/organizations"): ALL,
    ("GET", "/v1/hsds/organizations/{organization_id}"): ALL,
    ("GET", "/v1/hsds/taxonomies"): ALL,
    ("GET", "/v1/hsds/taxonomies/{taxonomy_id}"): ALL,
    ("GET", "/v1/hsds/taxonomy_terms"): ALL,
    ("GET", "/v1/hsds/taxonomy_terms/{taxonomy_term_id}"): ALL,
    # OGC API – Features (tests/api/test_ogc.py): the directory as no viewer sees a safe house, for all.
    ("GET", "/ogc/"): ALL,
    ("GET", "/ogc"): ALL,
    ("GET", "/ogc/conformance"): ALL,
    ("GET", "/ogc/collections"): ALL,
    **{("GET", f"/ogc/collections/{c}{tail}"): ALL for c in OGC_COLLECTIONS for tail in OGC_TAILS},
    # Listing writes and management (tests/api/test_authorization_matrix.py walks them per object).
    ("POST", "/v1/services"): WRITERS,
    ("PATCH", "/v1/services/{service_id}"): WRITERS,
    ("DELETE", "/v1/services/{service_id}"): WRITERS,
    ("PUT", "/v1/services/{service_id}/capacity"): WRITERS,
    ("POST", "/v1/services/{service_id}/closures"): WRITERS,
    ("POST", "/v1/services/{service_id}/reopen"): WRITERS,
    ("POST", "/v1/services/{service_id}/verify"): WRITERS,
    ("GET", "/v1/services/{service_id}/history"): WRITERS,
    ("GET", "/v1/locations/{location_id}"): WRITERS,
    ("POST", "/v1/locations"): WRITERS,
    ("PATCH", "/v1/locations/{location_id}"): WRITERS,
    ("DELETE", "/v1/locations/{location_id}"): WRITERS,
    ("GET", "/v1/service-areas/{area_id}"): WRITERS,
    ("POST", "/v1/service-areas"): WRITERS,
    ("PATCH", "/v1/service-areas/{area_id}"): WRITERS,
    ("DELETE", "/v1/service-areas/{area_id}"): WRITERS,
    ("GET", "/v1/organisations/{organisation_id}/freshness"): WRITERS,
    # An organisation's own listings (tests/api/test_own_listings.py walks them per role and object).
    ("GET", "/v1/organisations/{organisation_id}/locations"): WRITERS,
    ("GET", "/v1/organisations/{organisation_id}/service-areas"): WRITERS,
    ("GET", "/v1/locations/{location_id}/history"): WRITERS,
    # Administration.
    ("POST", "/v1/organisations"): ADMIN,
    ("PATCH", "/v1/organisations/{organisation_id}"): ADMIN,
    ("POST", "/v1/organisations/{organisation_id}/deactivate"): ADMIN,
    ("POST", "/v1/organisations/{organisation_id}/verification"): ADMIN,
    ("GET", "/v1/clients"): ADMIN,
    ("POST", "/v1/clients"): ADMIN,
    ("GET", "/v1/clients/{client_id}"): ADMIN,
    ("POST", "/v1/clients/{client_id}/rotate"): ADMIN,
    ("POST", "/v1/clients/{client_id}/revoke"): ADMIN,
    ("GET", "/v1/identity-bindings"): ADMIN,
    ("POST", "/v1/identity-bindings"): ADMIN,
    ("GET", "/v1/identity-bindings/{binding_id}"): ADMIN,
    ("POST", "/v1/identity-bindings/{binding_id}/revoke"): ADMIN,
    # OAuth 2.0 token endpoint: client credentials instead of a bearer token.
    ("POST", "/v1/auth/token"): DECLARED_PUBLIC,
    # Care pathways (tests/api/test_pathways.py checks scope per object; departments and admins read none).
    ("POST", "/v1/cases"): SPECIALIST,
    ("GET", "/v1/cases/{case_id}"): CASE_READERS,
    ("PATCH", "/v1/cases/{case_id}"): SPECIALIST,
    ("POST", "/v1/cases/{case_id}/close"): SPECIALIST,
    ("GET", "/v1/cases/{case_id}/competent-crips"): CASE_READERS,
    ("GET", "/v1/cases/{case_id}/pathway"): CASE_READERS,
    ("POST", "/v1/cases/{case_id}/events"): CASE_READERS,
    ("POST", "/v1/handoffs"): CASE_READERS,
    ("GET", "/v1/handoffs"): CASE_READERS,
    ("GET", "/v1/handoffs/{handoff_id}"): CASE_READERS,
    ("POST", "/v1/handoffs/{handoff_id}/transitions"): CASE_READERS,
    # Need-to-know: the specialists working a case through a handoff (tests/api/test_need_to_know.py).
    ("GET", "/v1/handoffs/{handoff_id}/assignees"): SPECIALIST,
    ("PUT", "/v1/handoffs/{handoff_id}/assignees"): SPECIALIST,
    ("POST", "/v1/webhook-subscriptions"): PARTNER,
    ("GET", "/v1/webhook-subscriptions"): PARTNER,
    ("DELETE", "/v1/webhook-subscriptions/{subscription_id}"): PARTNER,
    ("GET", "/v1/webhook-subscriptions/{subscription_id}/deliveries"): PARTNER,
    ("GET", "/v1/audit"): ADMIN,
    ("GET", "/v1/jobs/health"): ADMIN,
    # Statistics (tests/api/test_stats.py pins a department to its own collectivité).
    ("GET", "/v1/stats/handoffs"): ANALYSTS,
    ("GET", "/v1/stats/needs"): ANALYSTS,
    ("GET", "/v1/stats/coverage"): ANALYSTS,
}

# A request each route accepts when authorised (path parameters filled in).
EXAMPLES: dict[tuple[str, str], dict] = {  # type: ignore[type-arg]
    ("GET", "/v1/territories"): {"url": "/v1/territories"},
    ("GET", "/v1/tiles/{z}/{x}/{y}.mvt"): {"url": "/v1/tiles/10/518/352.mvt"},
    ("GET", "/v1/me"): {"url": "/v1/me"},
    ("GET", "/v1/territories/resolve"): {"url": "/v1/territories/resolve?lat=45.76&lon=4.84"},
    ("POST", "/v1/territories/resolve"): {
        "url": "/v1/territories/resolve",
        "json": {"points": [{"lat": 45, "lon": 2}]},
    },
    ("GET", "/v1/departements"): {"url": "/v1/departements"},
    ("GET", "/v1/departements/{code}"): {"url": "/v1/departements/93"},
    ("GET", "/v1/collectivites"): {"url": "/v1/collectivites"},
    ("GET", "/v1/collectivites/{code}"): {"url": "/v1/collectivites/93D"},
    ("GET", "/v1/communes"): {"url": "/v1/communes?q=paris"},
    ("GET", "/v1/collectivites/{code}/crip"): {"url": "/v1/collectivites/93D/crip"},
    ("GET", "/v1/services/search"): {"url": "/v1/services/search?commune=93008"},
    ("GET", "/v1/services/{service_id}"): {"url": "/v1/services/{crip_service}"},
    ("GET", "/v1/organisations"): {"url": "/v1/organisations"},
    ("GET", "/v1/organisations/{organisation_id}"): {"url": "/v1/organisations/{crip}"},
    ("GET", "/v1/specialisms"): {"url": "/v1/specialisms"},
    ("GET", "/v1/hsds"): {"url": "/v1/hsds"},
    ("GET", "/v1/hsds/services"): {"url": "/v1/hsds/services"},
    ("GET", "/v1/hsds/services/{service_id}"): {"url": "/v1/hsds/services/{crip_service}"},
    ("GET", "/v1/hsds/service_at_locations"): {"url": "/v1/hsds/service_at_locations"},
    ("GET", "/v1/hsds/service_at_locations/{service_at_location_id}"): {
        "url": "/v1/hsds/service_at_locations/{crip_service}"
    },
    ("GET", "/v1/hsds/organizations"): {"url": "/v1/hsds/organizations"},
    ("GET", "/v1/hsds/organizations/{organization_id}"): {"url": "/v1/hsds/organizations/{crip}"},
    ("GET", "/v1/hsds/taxonomies"): {"url": "/v1/hsds/taxonomies"},
    ("GET", "/v1/hsds/taxonomies/{taxonomy_id}"): {
        "url": f"/v1/hsds/taxonomies/{derived_id('taxonomy', 'specialisms')}"
    },
    ("GET", "/v1/hsds/taxonomy_terms"): {"url": "/v1/hsds/taxonomy_terms"},
    ("GET", "/v1/hsds/taxonomy_terms/{taxonomy_term_id}"): {
        "url": f"/v1/hsds/taxonomy_terms/{derived_id('taxonomy_term', 'specialisms', 'crip')}"
    },
    ("GET", "/ogc/"): {"url": "/ogc/"},
    ("GET", "/ogc"): {"url": "/ogc"},
    ("GET", "/ogc/conformance"): {"url": "/ogc/conformance"},
    ("GET", "/ogc/collections"): {"url": "/ogc/collections"},
    **{
        ("GET", f"/ogc/collections/{c}{tail}"): {
            "url": f"/ogc/collections/{c}{tail}".replace("{feature_id}", OGC_FEATURES.get(c, "93008"))
        }
        for c in OGC_COLLECTIONS
        for tail in OGC_TAILS
    },
    ("GET", "/v1/stats/handoffs"): {"url": "/v1/stats/handoffs?group_by=month"},
    ("GET", "/v1/stats/needs"): {"url": "/v1/stats/needs"},
    ("GET", "/v1/stats/coverage"): {"url": "/v1/stats/coverage?collectivite=93D&specialism=crip"},
}


def _documented_routes(app: FastAPI) -> dict[tuple[str, str], frozenset[str] | None]:
    return {
        key: roles
        for key, roles in route_policies(app).items()
        if key[0] != "HEAD" and not key[1].startswith(("/docs", "/redoc", "/openapi"))
    }


def test_every_route_matches_the_checked_in_policy(app: FastAPI) -> None:
    assert _documented_routes(app) == POLICY


def test_every_v1_route_is_exercised_per_role(app: FastAPI) -> None:
    """Reads by EXAMPLES here, listing routes by the authorization matrix, the rest by ADMIN_ONLY tests."""
    covered = set(EXAMPLES) | MATRIX_ROUTES | set(ADMIN_ONLY) | {("POST", "/v1/auth/token")} | PATHWAY_ROUTES
    covered |= OWN_LISTING_ROUTES
    assert {key for key in POLICY if key[1].startswith(("/v1", "/ogc"))} == covered


def test_an_app_with_an_unprotected_v1_route_is_refused() -> None:
    app = FastAPI()
    router = APIRouter(prefix="/v1")

    @router.get("/leak")
    async def leak() -> dict[str, str]:
        return {"secret": "x"}

    app.include_router(router)
    with pytest.raises(RuntimeError, match="GET /v1/leak"):
        assert_policies(app)


OIDC_ISSUER = "https://login.example.test"  # configured in tests/conftest.py's settings
ADMIN_ONLY: dict[tuple[str, str], dict] = {  # type: ignore[type-arg]
    ("POST", "/v1/organisations"): {"url": "/v1/organisations", "json": {"name": "Nouvelle", "kind": "association"}},
    ("PATCH", "/v1/organisations/{organisation_id}"): {"url": "/v1/organisations/{crip}", "json": {"website": None}},
    ("POST", "/v1/organisations/{organisation_id}/deactivate"): {"url": "/v1/organisations/{member}/deactivate"},
    ("POST", "/v1/organisations/{organisation_id}/verification"): {
        "url": "/v1/organisations/{crip}/verification",
        "json": {"state": "verified"},
    },
    ("GET", "/v1/clients"): {"url": "/v1/clients"},
    ("POST", "/v1/clients"): {
        "url": "/v1/clients",
        "json": {"name": "SI", "role": "partner", "organisation_id": "{member}"},
    },
    ("GET", "/v1/clients/{client_id}"): {"url": "/v1/clients/{client}"},
    ("POST", "/v1/clients/{client_id}/rotate"): {"url": "/v1/clients/{client}/rotate"},
    ("POST", "/v1/clients/{client_id}/revoke"): {"url": "/v1/clients/{client}/revoke"},
    ("GET", "/v1/identity-bindings"): {"url": "/v1/identity-bindings"},
    ("POST", "/v1/identity-bindings"): {
        "url": "/v1/identity-bindings",
        "json": {
            "issuer": OIDC_ISSUER,
            "claim": "groups",
            "value": "crip-93",
            "role": "department",
            "collectivite_code": "93D",
        },
    },
    ("GET", "/v1/identity-bindings/{binding_id}"): {"url": "/v1/identity-bindings/{binding}"},
    ("POST", "/v1/identity-bindings/{binding_id}/revoke"): {"url": "/v1/identity-bindings/{binding}/revoke"},
    ("GET", "/v1/jobs/health"): {"url": "/v1/jobs/health"},
}


@pytest.mark.parametrize("key", sorted(ADMIN_ONLY))
@pytest.mark.parametrize("role", list(Role))
async def test_admin_routes(
    client: httpx.AsyncClient,
    auth,
    reader: AsyncConnection,
    key: tuple[str, str],  # type: ignore[no-untyped-def]
    role: Role,
    ids: dict[str, str],
) -> None:
    from tests.api.test_listings import fingerprint

    example = _example_from(ADMIN_ONLY, key, ids)
    headers = auth(role, org=uuid.UUID(ids["member"]) if role is Role.partner else None)
    if key[0] == "PATCH":
        headers["If-Match"] = "*"
    before = await fingerprint(reader)
    response = await client.request(key[0], headers=headers, **example)
    if role is Role.admin:
        assert response.status_code in (200, 201), response.text
    else:
        assert response.status_code == 403
        assert await fingerprint(reader) == before


def _example_from(table: dict, key: tuple[str, str], ids: dict[str, str]) -> dict:  # type: ignore[type-arg]
    example = dict(table[key])
    example["url"] = example["url"].format(**ids)
    if "json" in example:
        example["json"] = {k: v.format(**ids) if isinstance(v, str) else v for k, v in example["json"].items()}
    return example


@pytest.fixture
async def ids(reader: AsyncConnection) -> dict[str, str]:
    """Ids the example requests refer to: the CRIP of 93D and its service."""
    row = await (
        await reader.execute(
            "SELECT o.id, s.id FROM organisation o JOIN service s ON s.organisation_id = o.id "
            "WHERE o.seed_key = 'crip:93D'"
        )
    ).fetchone()
    member = await (await reader.execute("SELECT id FROM organisation WHERE seed_key = 'collective:acpe'")).fetchone()
    client_id = uuid.uuid4()
    await reader.execute(
        "INSERT INTO api_client (id, name, role, organisation_id, secret_hash) VALUES (%s, 'x', 'partner', %s, 'x')",
        (client_id, member[0]),
    )
    binding = await (
        await reader.execute(
            "INSERT INTO identity_binding (id, issuer, claim, value, role, created_by)"
            " VALUES (gen_random_uuid(), %s, 'groups', 'admins', 'admin', 'test') RETURNING id",
            (OIDC_ISSUER,),
        )
    ).fetchone()
    return {
        "crip": str(row[0]),
        "crip_service": str(row[1]),
        "member": str(member[0]),
        "client": str(client_id),
        "binding": str(binding[0]),
    }


def _example(key: tuple[str, str], ids: dict[str, str]) -> dict:  # type: ignore[type-arg]
    return _example_from(EXAMPLES, key, ids)


@pytest.mark.parametrize("key", sorted(EXAMPLES))
async def test_each_v1_route_refuses_anonymous_callers(
    client: httpx.AsyncClient, key: tuple[str, str], ids: dict[str, str]
) -> None:
    method, _ = key
    response = await client.request(method, **_example(key, ids))
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"


@pytest.mark.parametrize("key", sorted(EXAMPLES))
@pytest.mark.parametrize("role", list(Role))
async def test_each_v1_route_applies_its_policy_per_role(
    client: httpx.AsyncClient,
    auth,
    key: tuple[str, str],  # type: ignore[no-untyped-def]
    role: Role,
    ids: dict[str, str],
) -> None:
    method, _ = key
    response = await client.request(method, headers=auth(role), **_example(key, ids))
    allowed = POLICY[key]
    assert allowed is not None
    if role in allowed:
        assert response.status_code == 200, response.text
    else:
        assert response.status_code == 403
        assert response.json()["code"] == "forbidden"
