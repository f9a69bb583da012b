"""Bearer tokens (RFC 8725): every forged, stale or incomplete token is a 401 problem with a challenge."""

import base64
import hashlib
import hmac
import json
import time
import uuid

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI

from api.tokens import ALGORITHM, TOKEN_TYPE, TokenService
from directory.access import Role

URL = "/v1/departements/93"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _claims(service: TokenService, **overrides: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "iss": service.issuer,
        "aud": service.audience,
        "sub": "someone",
        "role": "specialist",
        "iat": now,
        "nbf": now,
        "exp": now + 300,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _sign(service: TokenService, claims: dict[str, object], **header: object) -> str:
    key = service.keys.signing_key
    headers = {"kid": key.kid, "typ": TOKEN_TYPE, **header}
    return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers=headers)


async def _call(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.get(URL, headers={"Authorization": f"Bearer {token}"})


def _assert_401(response: httpx.Response, fragment: str = "") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith('Bearer realm="maillage"')
    body = response.json()
    assert body["code"] == "unauthenticated"
    assert fragment in body["detail"]


async def test_a_valid_token_is_accepted(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await _call(client, _sign(app.state.tokens, _claims(app.state.tokens)))
    assert response.status_code == 200
    assert response.json()["properties"]["name"] == "Seine-Saint-Denis"


async def test_no_token_is_401_without_error_attribute(client: httpx.AsyncClient) -> None:
    response = await client.get(URL)
    _assert_401(response, "bearer token is required")
    assert response.headers["www-authenticate"] == 'Bearer realm="maillage"'


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer    ", "Token abc"])
async def test_malformed_authorization_header(client: httpx.AsyncClient, header: str) -> None:
    _assert_401(await client.get(URL, headers={"Authorization": header}))


async def test_two_authorization_headers_are_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = _sign(app.state.tokens, _claims(app.state.tokens))
    response = await client.get(
        URL, headers=[("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    )
    _assert_401(response, "exactly one")


async def test_scheme_is_case_insensitive(client: httpx.AsyncClient, app: FastAPI) -> None:
    token = _sign(app.state.tokens, _claims(app.state.tokens))
    assert (await client.get(URL, headers={"Authorization": f"bearer {token}"})).status_code == 200


@pytest.mark.parametrize(
    ("overrides", "fragment"),
    [
        ({"exp": int(time.time()) - 31}, "expired"),
        ({"nbf": int(time.time()) + 120}, "not valid yet"),
        ({"iat": int(time.time()) + 120}, "not valid yet"),
        ({"aud": "another-api"}, "audience"),
        ({"aud": ["maillage-api", "another-api"]}, "audience"),
        ({"iss": "https://maillage.local.evil"}, "issuer"),
        ({"exp": None}, "exp"),
        ({"iat": None}, "iat"),
        ({"iss": None}, "iss"),
        ({"aud": None}, "aud"),
        ({"sub": None}, "sub"),
        ({"sub": ""}, "sub"),
        ({"role": None}, "role"),
        ({"role": "superuser"}, "role"),
        ({"exp": int(time.time()) + 3600}, "longer than 900"),
        ({"role": "partner"}, "org claim"),
        ({"role": "partner", "org": "not-a-uuid"}, "UUID"),
        ({"role": "department"}, "collectivite claim"),
        ({"role": "department", "collectivite": "93D; DROP"}, "collectivité code"),
    ],
)
async def test_bad_claims_are_refused(
    client: httpx.AsyncClient, app: FastAPI, overrides: dict[str, object], fragment: str
) -> None:
    service = app.state.tokens
    _assert_401(await _call(client, _sign(service, _claims(service, **overrides))), fragment)


async def test_expiry_within_leeway_is_accepted(client: httpx.AsyncClient, app: FastAPI) -> None:
    service = app.state.tokens
    now = int(time.time())
    token = _sign(service, _claims(service, iat=now - 300, nbf=now - 300, exp=now - 20))
    assert (await _call(client, token)).status_code == 200


@pytest.mark.parametrize("alg", ["none", "None", "NONE", "nOnE"])
async def test_alg_none_is_refused(client: httpx.AsyncClient, app: FastAPI, alg: str) -> None:
    service = app.state.tokens
    header = {"alg": alg, "typ": TOKEN_TYPE, "kid": service.keys.signing_key.kid}
    token = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(service)).encode())}."
    _assert_401(await _call(client, token), "ES256")


@pytest.mark.parametrize("encoding", ["pem", "der", "jwk"])
async def test_hs256_signed_with_our_public_key_is_refused(
    client: httpx.AsyncClient, app: FastAPI, encoding: str
) -> None:
    """Algorithm confusion (CVE-2024-33663 class): the public key used as an HMAC secret."""
    service = app.state.tokens
    public = service.keys.signing_key.private_key.public_key()
    secret = {
        "pem": public.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo),
        "der": public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo),
        "jwk": json.dumps(service.keys.signing_key.public_jwk).encode(),
    }[encoding]
    header = {"alg": "HS256", "typ": TOKEN_TYPE, "kid": service.keys.signing_key.kid}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(_claims(service)).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    _assert_401(await _call(client, f"{signing_input}.{_b64(signature)}"), "ES256")


async def test_a_key_of_our_own_format_but_not_ours_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    service = app.state.tokens
    stranger = ec.generate_private_key(ec.SECP256R1())
    token = jwt.encode(
        _claims(service),
        stranger,
        algorithm=ALGORITHM,
        headers={"kid": service.keys.signing_key.kid, "typ": TOKEN_TYPE},
    )
    _assert_401(await _call(client, token), "signature")


async def test_unknown_kid_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    service = app.state.tokens
    _assert_401(await _call(client, _sign(service, _claims(service), kid="someone-elses-key")), "unknown key")


@pytest.mark.parametrize("typ", [None, "JWT", "id_token"])
async def test_token_type_must_be_access_token(client: httpx.AsyncClient, app: FastAPI, typ: str | None) -> None:
    service = app.state.tokens
    key = service.keys.signing_key
    headers: dict[str, object] = {"kid": key.kid}
    if typ:
        headers["typ"] = typ
    token = jwt.encode(_claims(service), key.private_key, algorithm=ALGORITHM, headers=headers)
    _assert_401(await _call(client, token), "type")


async def test_critical_headers_are_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    service = app.state.tokens
    _assert_401(await _call(client, _sign(service, _claims(service), crit=["exp"])))


async def test_non_ascii_header_bytes_are_refused(client: httpx.AsyncClient) -> None:
    _assert_401(await client.get(URL, headers={"Authorization": b"Bearer \xe9.\xe9.\xe9"}))


async def test_oversized_token_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    service = app.state.tokens
    _assert_401(await _call(client, _sign(service, _claims(service, padding="x" * 5000))), "too large")


@pytest.mark.parametrize("garbage", ["abc", "a.b.c", "a.b.c.d.e", "ey.ey.ey", "%%%.%%%.%%%"])
async def test_garbage_tokens_are_refused(client: httpx.AsyncClient, garbage: str) -> None:
    _assert_401(await _call(client, garbage))


async def test_tampered_payload_is_refused(client: httpx.AsyncClient, app: FastAPI) -> None:
    service = app.state.tokens
    header, _, signature = _sign(service, _claims(service)).split(".")
    forged = _b64(json.dumps(_claims(service, role="admin")).encode())
    _assert_401(await _call(client, f"{header}.{forged}.{signature}"), "signature")


def test_issue_refuses_lifetimes_over_15_minutes(app: FastAPI) -> None:
    with pytest.raises(ValueError, match="ttl"):
        app.state.tokens.issue(subject="x", role=Role.specialist, ttl=901)


def test_issued_tokens_carry_the_claims_and_kid(app: FastAPI) -> None:
    service = app.state.tokens
    org = uuid.uuid4()
    token = service.issue(subject="asso-42", role=Role.partner, organisation_id=org, ttl=60)
    header = jwt.get_unverified_header(token)
    assert header == {"alg": "ES256", "kid": service.keys.signing_key.kid, "typ": "at+jwt"}
    principal = service.verify(token)
    assert (principal.subject, principal.role, principal.organisation_id) == ("asso-42", Role.partner, org)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 60
    assert {"iss", "aud", "sub", "role", "org", "iat", "nbf", "exp", "jti"} <= set(claims)


async def test_jwks_publishes_the_verification_key(client: httpx.AsyncClient, app: FastAPI) -> None:
    response = await client.get("/.well-known/jwks.json")
    assert response.status_code == 200
    keys = response.json()["keys"]
    assert [k["kid"] for k in keys] == [app.state.tokens.keys.signing_key.kid]
    assert keys[0]["kty"] == "EC"
    assert keys[0]["crv"] == "P-256"
    assert keys[0]["alg"] == "ES256"
    assert "d" not in keys[0]  # never the private part
    # A partner verifying with the published key gets the same claims.
    token = app.state.tokens.issue(subject="s", role=Role.admin)
    public = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(token, public, algorithms=["ES256"], audience=app.state.tokens.audience)
    assert claims["role"] == "admin"
