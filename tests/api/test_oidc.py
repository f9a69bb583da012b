"""Access tokens from an outside OpenID provider — a real one (node oidc-provider, tests/oidc_provider.py),
never a mocked JWKS: discovery, key rotation mid-run (a new kid makes exactly one fetch), expiry,
another audience, an unknown issuer, an algorithm the issuer may not use, a lifetime too long, mapped
claims missing, and the claim mapping through identity bindings (a role and its scope; none, or
several that disagree, is a 403; a revoked binding stops working at once)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection

from api.app import create_app
from api.local_oidc import Provider, ec_key, free_port, rsa_key, running
from api.oidc import OidcVerifier
from api.settings import OidcIssuer, Settings

SECRET = "a-client-secret-long-enough-for-the-provider"
API = "urn:maillage:api"
RESOURCES = {
    API: {"audience": "maillage-api", "ttl": 300, "alg": "ES256"},
    "urn:maillage:rs256": {"audience": "maillage-api", "ttl": 300, "alg": "RS256"},
    "urn:elsewhere": {"audience": "another-api", "ttl": 300},
    "urn:maillage:long": {"audience": "maillage-api", "ttl": 7200},
    "urn:maillage:short": {"audience": "maillage-api", "ttl": 1},
}
CLIENTS = {
    "crip93": {"groups": ["crip-93"]},
    "hotline": {"groups": ["119-specialists", "staff"]},
    "association": {"groups": "assoc-x"},
    "stranger": {"groups": ["nobody-bound-this"]},
    "nogroups": {},
    "twohats": {"groups": ["crip-93", "119-specialists"]},
}
KEY_A, KEY_B, KEY_RSA = ec_key("ec-a"), ec_key("ec-b"), rsa_key("rsa-1")
STATS = {"from": "2026-01", "to": "2026-03", "group_by": "month"}


REDIRECT = "http://127.0.0.1:8080/callback"


def _config(keys: list[dict[str, Any]]) -> dict[str, Any]:
    """The provider's configuration (it signs ID tokens with RS256 by default: an RSA key is always there)."""
    return {
        "keys": keys,
        "resources": RESOURCES,
        "clients": [{"client_id": c, "client_secret": SECRET, "claims": claims} for c, claims in CLIENTS.items()],
        "users": [{"id": "analyste", "claims": {"groups": ["crip-93"]}}],
        "apps": [{"client_id": "console", "redirect_uris": [REDIRECT]}],
    }


def _log_in(issuer: str, user: str) -> str:
    """A person's access token by the authorization code flow with PKCE, as a client application gets
    it: the browser's steps (the provider's login and consent forms) played with httpx."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    with httpx.Client(base_url=issuer, follow_redirects=False, timeout=10) as browser:
        response = browser.get(
            "/auth",
            params={
                "client_id": "console",
                "response_type": "code",
                "redirect_uri": REDIRECT,
                "scope": "openid",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
                "resource": API,
                "state": "state-1",
            },
        )
        for _ in range(10):
            location = response.headers.get("location", "")
            if location.startswith(REDIRECT):
                break
            if location:
                response = browser.get(location)
                continue
            action = re.search(r'<form[^>]*action="([^"]+)"', response.text)
            assert action is not None, response.text[:500]
            fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', response.text))
            if 'name="login"' in response.text:
                fields |= {"login": user, "password": "any"}
            response = browser.post(action.group(1), data=fields)
        code = re.search(r"[?&]code=([^&]+)", location)
        assert code is not None, location
        token = browser.post(
            "/token",
            data={
                "grant_type": "authorization_code",
                "code": code.group(1),
                "redirect_uri": REDIRECT,
                "client_id": "console",
                "code_verifier": verifier,
                "resource": API,
            },
        )
        assert token.status_code == 200, token.text
        return str(token.json()["access_token"])


@pytest.fixture(scope="module")
def provider(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Provider]:
    with running(_config([KEY_A, KEY_RSA]), tmp_path_factory.mktemp("oidc") / "provider.log") as started:
        yield started


def _issuer(provider: Provider, **overrides: Any) -> OidcIssuer:
    return OidcIssuer(
        **{"issuer": provider.issuer, "audience": "maillage-api", "algorithms": ("ES256",), "leeway_seconds": 0}
        | overrides
    )


@pytest.fixture
async def oidc(app: FastAPI, provider: Provider) -> AsyncIterator[OidcVerifier]:
    """The app's verifier for the test provider, reading it over real HTTP."""
    previous = app.state.oidc
    async with httpx.AsyncClient() as http:
        app.state.oidc = OidcVerifier([_issuer(provider)], http)
        try:
            yield app.state.oidc
        finally:
            app.state.oidc = previous


async def _bind(reader: AsyncConnection, issuer: str, value: str, role: str, **scope: Any) -> uuid.UUID:
    row = await (
        await reader.execute(
            """INSERT INTO identity_binding (id, issuer, claim, value, role, organisation_id, collectivite_code,
                                             created_by)
               VALUES (gen_random_uuid(), %s, 'groups', %s, %s, %s, %s, 'test') RETURNING id""",
            (issuer, value, role, scope.get("organisation_id"), scope.get("collectivite_code")),
        )
    ).fetchone()
    assert row is not None
    return uuid.UUID(str(row[0]))


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _refused(response: httpx.Response, status: int, words: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"], response.json()
    if status == 401:
        assert response.headers["www-authenticate"] == 'Bearer realm="maillage", error="invalid_token"'


async def test_a_provider_token_acts_with_its_binding_s_role_and_scope(
    client: httpx.AsyncClient, reader: AsyncConnection, oidc: OidcVerifier, provider: Provider
) -> None:
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    await _bind(reader, provider.issuer, "119-specialists", "specialist")
    member = (
        await (await reader.execute("SELECT id FROM organisation WHERE kind = 'association' LIMIT 1")).fetchone()
    )[0]  # type: ignore[index]
    await _bind(reader, provider.issuer, "assoc-x", "partner", organisation_id=member)

    department = _bearer(provider.token("crip93", SECRET, API))
    assert (await client.get("/v1/stats/handoffs", params=STATS, headers=department)).status_code == 200
    other = await client.get("/v1/stats/handoffs", params={**STATS, "collectivite": "75C"}, headers=department)
    assert other.status_code == 404  # its scope is 93D, as bound: another territory does not exist for it
    assert (await client.get("/v1/handoffs", headers=department)).status_code == 403  # not a case reader

    specialist = _bearer(provider.token("hotline", SECRET, API))  # "staff" is bound to nothing: ignored
    assert (await client.get("/v1/handoffs", headers=specialist)).status_code == 200
    assert (await client.get("/v1/stats/handoffs", params=STATS, headers=specialist)).status_code == 200

    partner = _bearer(provider.token("association", SECRET, API))  # a string claim, not a list
    own = await client.get(f"/v1/organisations/{member}/freshness", headers=partner)
    assert own.status_code == 200, own.text
    assert (await client.get("/v1/stats/handoffs", params=STATS, headers=partner)).status_code == 403
    # The journal knows who it was: the provider and its subjects, as the roles they were bound to.
    rows = await (
        await reader.execute("SELECT DISTINCT actor_issuer, actor_subject, actor_role FROM audit_event ORDER BY 2")
    ).fetchall()
    issuer = provider.issuer
    assert {
        (issuer, "association", "partner"),
        (issuer, "crip93", "department"),
        (issuer, "hotline", "specialist"),
    } <= set(rows)


async def test_a_person_logs_in_with_the_authorization_code_flow(
    client: httpx.AsyncClient, reader: AsyncConnection, oidc: OidcVerifier, provider: Provider
) -> None:
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    person = _bearer(_log_in(provider.issuer, "analyste"))
    assert (await client.get("/v1/stats/handoffs", params=STATS, headers=person)).status_code == 200
    assert (await client.get("/v1/handoffs", headers=person)).status_code == 403


async def test_me_says_what_the_bindings_make_of_a_provider_s_people(
    client: httpx.AsyncClient, reader: AsyncConnection, oidc: OidcVerifier, provider: Provider
) -> None:
    """GET /v1/me answers as the bindings made the caller (the console reads it to choose its screens), and
    nothing of the provider's token; a binding to an organisation since deactivated grants nothing."""
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    member = await (
        await reader.execute("SELECT id, name FROM organisation WHERE kind = 'association' ORDER BY id LIMIT 1")
    ).fetchone()
    assert member is not None
    await _bind(reader, provider.issuer, "assoc-x", "partner", organisation_id=member[0])

    department = await client.get("/v1/me", headers=_bearer(provider.token("crip93", SECRET, API)))
    assert department.json() == {
        "role": "department",
        "organisation": None,
        "collectivite": {"code": "93D", "name": "Département de la Seine-Saint-Denis"},
    }
    partner = _bearer(provider.token("association", SECRET, API))
    assert (await client.get("/v1/me", headers=partner)).json() == {
        "role": "partner",
        "organisation": {"id": str(member[0]), "name": member[1], "active": True},
        "collectivite": None,
    }
    await reader.execute("UPDATE organisation SET deactivated_at = now() WHERE id = %s", (member[0],))
    _refused(await client.get("/v1/me", headers=partner), 403, "no Maillage binding names your groups")


async def test_claims_bound_to_nothing_or_to_disagreeing_bindings_are_refused(
    client: httpx.AsyncClient, reader: AsyncConnection, oidc: OidcVerifier, provider: Provider
) -> None:
    _refused(
        await client.get("/v1/specialisms", headers=_bearer(provider.token("stranger", SECRET, API))),
        403,
        "no Maillage binding names your groups",
    )
    _refused(
        await client.get("/v1/handoffs", headers=_bearer(provider.token("stranger", SECRET, API))),
        403,
        "no Maillage binding names your groups",
    )
    denied = "SELECT actor_issuer, actor_subject, actor_role, outcome FROM audit_event ORDER BY id DESC LIMIT 1"
    assert await (await reader.execute(denied)).fetchone() == (provider.issuer, "stranger", None, "denied")
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    await _bind(reader, provider.issuer, "119-specialists", "specialist")
    _refused(
        await client.get("/v1/specialisms", headers=_bearer(provider.token("twohats", SECRET, API))),
        403,
        "several Maillage bindings that disagree",
    )
    # A binding of another issuer, or a revoked one, grants nothing.
    token = _bearer(provider.token("crip93", SECRET, API))
    assert (await client.get("/v1/specialisms", headers=token)).status_code == 200
    await reader.execute("UPDATE identity_binding SET revoked_at = now() WHERE value = 'crip-93'")
    await _bind(reader, "https://another.example", "crip-93", "admin")
    _refused(await client.get("/v1/specialisms", headers=token), 403, "no Maillage binding")


@pytest.mark.parametrize(
    ("client_id", "resource", "status", "words"),
    [
        ("crip93", "urn:elsewhere", 401, "meant for another audience"),
        ("crip93", "urn:maillage:rs256", 401, "algorithm is not one this issuer may use"),
        ("crip93", "urn:maillage:long", 401, "lives longer than 900 seconds"),
        ("nogroups", API, 401, "lacks the groups claim"),
    ],
)
async def test_tokens_the_issuer_s_rules_refuse(
    client: httpx.AsyncClient,
    reader: AsyncConnection,
    oidc: OidcVerifier,
    provider: Provider,
    client_id: str,
    resource: str,
    status: int,
    words: str,
) -> None:
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    token = provider.token(client_id, SECRET, resource)
    _refused(await client.get("/v1/specialisms", headers=_bearer(token)), status, words)


async def test_an_algorithm_that_does_not_fit_its_key_is_refused_not_a_500(
    client: httpx.AsyncClient, reader: AsyncConnection, app: FastAPI, provider: Provider
) -> None:
    """RS256 named over an EC key's kid (both algorithms allowed): PyJWT would raise a TypeError."""
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    genuine = provider.token("crip93", SECRET, API)
    async with httpx.AsyncClient() as http:
        configured = [_issuer(provider, algorithms=("ES256", "RS256"))]
        previous, app.state.oidc = app.state.oidc, OidcVerifier(configured, http)
        try:
            assert (await client.get("/v1/specialisms", headers=_bearer(genuine))).status_code == 200
            forged = _with_header(genuine, alg="RS256")
            _refused(await client.get("/v1/specialisms", headers=_bearer(forged)), 401, "does not match its key")
        finally:
            app.state.oidc = previous


async def test_an_expired_token_is_refused(
    client: httpx.AsyncClient, reader: AsyncConnection, oidc: OidcVerifier, provider: Provider
) -> None:
    await _bind(reader, provider.issuer, "crip-93", "department", collectivite_code="93D")
    token = _bearer(provider.token("crip93", SECRET, "urn:maillage:short"))  # lives 1 s, no leeway here
    await asyncio.sleep(2.1)
    _refused(await client.get("/v1/specialisms", headers=token), 401, "expired")


async def test_an_unknown_issuer_is_refused(
    client: httpx.AsyncClient, reader: AsyncConnection, oidc: OidcVerifier, tmp_path: Path
) -> None:
    with running(_config([KEY_A, KEY_RSA]), tmp_path / "other.log") as other:  # same keys, not configured
        await _bind(reader, other.issuer, "crip-93", "department", collectivite_code="93D")
        token = other.token("crip93", SECRET, API)
    _refused(await client.get("/v1/specialisms", headers=_bearer(token)), 401, "unknown")


async def test_a_key_rotated_mid_run_costs_one_fetch(
    client: httpx.AsyncClient, reader: AsyncConnection, app: FastAPI, tmp_path: Path
) -> None:
    """The provider restarts signing with a new key: the first token under it makes the verifier fetch
    the keys once; later ones, and a forged kid soon after, fetch nothing more."""
    port = free_port()
    with running(_config([KEY_A, KEY_RSA]), tmp_path / "a.log", port=port) as before:
        issuer = before.issuer
        await _bind(reader, issuer, "crip-93", "department", collectivite_code="93D")
        fetches: list[str] = []
        async with httpx.AsyncClient(event_hooks={"request": [_record(fetches)]}) as http:
            previous, app.state.oidc = (
                app.state.oidc,
                OidcVerifier([OidcIssuer(issuer=issuer, audience="maillage-api")], http, refetch_seconds=1),
            )
            try:
                first = before.token("crip93", SECRET, API)
                assert (await client.get("/v1/specialisms", headers=_bearer(first))).status_code == 200
                assert len(fetches) == 2  # discovery, then the JWKS
                before.process.terminate()
                before.process.wait(timeout=10)
                with running(_config([KEY_B, KEY_A, KEY_RSA]), tmp_path / "b.log", port=port) as after:
                    await asyncio.sleep(1.1)  # past the refetch interval (30 s by default; 1 s here)
                    rotated = after.token("crip93", SECRET, API)
                    assert _kid(rotated) == "ec-b"
                    assert (await client.get("/v1/specialisms", headers=_bearer(rotated))).status_code == 200
                    assert len(fetches) == 4  # one refetch: discovery and JWKS again
                    again = after.token("crip93", SECRET, API)
                    assert (await client.get("/v1/specialisms", headers=_bearer(again))).status_code == 200
                    assert (await client.get("/v1/specialisms", headers=_bearer(first))).status_code == 200
                    forged = _with_kid(again, "ec-forged")
                    _refused(await client.get("/v1/specialisms", headers=_bearer(forged)), 401, "does not publish")
                    assert len(fetches) == 4  # a refetch at most once per interval
            finally:
                app.state.oidc = previous


def _record(log: list[str]) -> Any:
    async def hook(request: httpx.Request) -> None:
        log.append(str(request.url))

    return hook


def _kid(token: str) -> str:
    import jwt

    return str(jwt.get_unverified_header(token)["kid"])


def _with_kid(token: str, kid: str) -> str:
    return _with_header(token, kid=kid)


def _with_header(token: str, **changes: str) -> str:
    import json

    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    encoded = base64.urlsafe_b64encode(json.dumps({**decoded, **changes}).encode()).rstrip(b"=").decode()
    return f"{encoded}.{payload}.{signature}"


async def test_the_provider_being_down_is_a_503_not_a_refusal(
    client: httpx.AsyncClient, app: FastAPI, tmp_path: Path
) -> None:
    with running(_config([KEY_A, KEY_RSA]), tmp_path / "gone.log") as gone:
        token = gone.token("crip93", SECRET, API)
        issuer = gone.issuer
    async with httpx.AsyncClient() as http:
        previous, app.state.oidc = (
            app.state.oidc,
            OidcVerifier([OidcIssuer(issuer=issuer, audience="maillage-api")], http),
        )
        try:
            responses = [await client.get("/v1/specialisms", headers=_bearer(token)) for _ in range(2)]
        finally:
            app.state.oidc = previous
    for response in responses:  # the second within the refetch interval too: never a refusal
        assert response.status_code == 503, response.text
        assert response.headers["retry-after"] == "5"
        assert "could not be reached" in response.json()["detail"]


def test_the_settings_configure_the_verifier(settings: Settings) -> None:
    configured = settings.model_copy(
        update={"oidc_issuers": (OidcIssuer(issuer="https://login.example.fr", audience="maillage-api"),)}
    )
    assert create_app(configured).state.oidc.owns("https://login.example.fr")
    assert not create_app(settings).state.oidc.owns("https://login.example.fr")


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"issuer": "http://login.example.fr"}, "https URL"),
        ({"algorithms": ["HS256"]}, "asymmetric"),
        ({"algorithms": ["none"]}, "asymmetric"),
        ({"max_token_lifetime_seconds": 10}, "greater than or equal"),
        ({"max_token_lifetime_seconds": 86400}, "less than or equal"),
    ],
)
def test_bad_provider_settings_are_refused(fields: dict[str, Any], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        OidcIssuer(**{"issuer": "https://login.example.fr", "audience": "maillage-api", **fields})


async def test_binding_admin_api(client: httpx.AsyncClient, auth, reader: AsyncConnection) -> None:  # type: ignore[no-untyped-def]
    admin = auth("admin")
    issuer = "https://login.example.test"  # configured in tests/conftest.py
    hotline = await (await reader.execute("SELECT id FROM organisation WHERE seed_key = 'hotline:119'")).fetchone()
    assert hotline is not None
    body = {"issuer": issuer, "claim": "groups", "value": "119", "role": "partner", "organisation_id": str(hotline[0])}
    refused = await client.post("/v1/identity-bindings", json=body, headers=admin)
    assert refused.status_code == 422
    assert "specialists, not its partners" in refused.text
    for change, words in (
        ({"issuer": "https://elsewhere.example"}, "not a configured"),
        ({"claim": "roles"}, "mapped"),
    ):
        response = await client.post("/v1/identity-bindings", json={**body, **change}, headers=admin)
        assert response.status_code == 422
        assert words in response.text
    staff = {"issuer": issuer, "claim": "groups", "value": "ops", "role": "admin"}
    created = await client.post("/v1/identity-bindings", json=staff, headers=admin)
    assert created.status_code == 201, created.text
    assert created.headers["location"].endswith(f"/v1/identity-bindings/{created.json()['binding_id']}")
    assert (await client.post("/v1/identity-bindings", json=staff, headers=admin)).status_code == 409
    revoked = await client.post(f"/v1/identity-bindings/{created.json()['binding_id']}/revoke", headers=admin)
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None
    assert (await client.post("/v1/identity-bindings", json=staff, headers=admin)).status_code == 201
