"""The local OpenID provider: node oidc-provider (oidc/provider.mjs, versions pinned in
oidc/package-lock.json, installed by `make test` and `make run`), started as a subprocess on the
loopback with the keys, resources, clients, users and claims it is given. The tests run it as the
outside provider they check tokens against; `maillage run` runs it with a demo user per role, so that
a client application logs in locally the way it will against the 119's or a département's provider.
Never for production."""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from .settings import REPO_ROOT

if TYPE_CHECKING:
    from sqlmodel.ext.asyncio.session import AsyncSession

PROVIDER = REPO_ROOT / "oidc" / "provider.mjs"
START_TIMEOUT = 30.0


def ec_key(kid: str) -> dict[str, Any]:
    """A private P-256 JWK (ES256)."""
    jwk = ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()), as_dict=True)
    return {**jwk, "kid": kid, "alg": "ES256", "use": "sig"}


def rsa_key(kid: str) -> dict[str, Any]:
    """A private 2048-bit RSA JWK (RS256)."""
    jwk = RSAAlgorithm.to_jwk(rsa.generate_private_key(public_exponent=65537, key_size=2048), as_dict=True)
    return {**jwk, "kid": kid, "alg": "RS256", "use": "sig"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class Provider:
    issuer: str
    process: subprocess.Popen[bytes]
    log: Path

    def token(self, client_id: str, secret: str, resource: str) -> str:
        """An access token by the client credentials grant, for that resource indicator."""
        response = httpx.post(
            f"{self.issuer}/token",
            auth=(client_id, secret),
            data={"grant_type": "client_credentials", "resource": resource, "scope": "api"},
            timeout=10,
        )
        if response.status_code != 200:
            raise RuntimeError(f"the provider refused the token: {response.text}")
        return str(response.json()["access_token"])


@contextlib.contextmanager
def running(config: dict[str, Any], log: Path, *, port: int | None = None) -> Iterator[Provider]:
    """The provider, listening; stopped on exit. `config` is oidc/provider.mjs's OIDC_CONFIG (without
    the port)."""
    node = shutil.which("node")
    if node is None or not (REPO_ROOT / "oidc" / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError("the local OpenID provider needs Node.js and `npm ci --prefix oidc` (make installs both)")
    port = port or free_port()
    issuer = f"http://127.0.0.1:{port}"
    nonce = secrets.token_hex(16)
    config = {**config, "port": port, "issuer": issuer, "nonce": nonce}
    env = {"PATH": "/usr/bin:/bin", "OIDC_CONFIG": json.dumps(config)}
    log.parent.mkdir(parents=True, exist_ok=True)
    log.touch()
    offset = log.stat().st_size
    with log.open("ab") as sink:
        process = subprocess.Popen([node, str(PROVIDER)], env=env, stdout=sink, stderr=subprocess.STDOUT)  # noqa: S603
    provider = Provider(issuer=issuer, process=process, log=log)
    try:
        # Ready when this very process says so, with the nonce it was given: another process holding
        # the port would otherwise be taken for the provider (and trusted).
        deadline = time.monotonic() + START_TIMEOUT
        while f"listening {issuer} {nonce}" not in log.read_bytes()[offset:].decode(errors="replace"):
            if process.poll() is not None:
                raise RuntimeError(f"the OpenID provider exited: {log.read_text()[-2000:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the OpenID provider did not start: {log.read_text()[-2000:]}")
            time.sleep(0.1)
        yield provider
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


# `maillage run`: one demo person per role, each in a group the demo bindings name.
DEMO_AUDIENCE = "maillage-api"
DEMO_RESOURCE = "urn:maillage:api"
DEMO_CLIENT = "maillage-console"  # a public client: authorization code + PKCE, no secret
DEMO_USERS = (
    ("specialiste", "119-specialists", "specialist"),
    ("analyste-93", "crip-93", "department"),
    ("partenaire", "demo-partner", "partner"),
    ("admin", "maillage-admins", "admin"),
)


def demo_keys(path: Path) -> list[dict[str, Any]]:
    """The local provider's signing keys, generated once under var/ (git-ignored) and kept, so that its
    tokens survive a restart."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.touch(mode=0o600)
        path.write_text(json.dumps([ec_key("local-ec-1"), rsa_key("local-rsa-1")]))
    return list(json.loads(path.read_text()))


def demo_config(keys: list[dict[str, Any]], redirect_uris: list[str]) -> dict[str, Any]:
    return {
        "keys": keys,
        "resources": {DEMO_RESOURCE: {"audience": DEMO_AUDIENCE, "ttl": 900, "alg": "ES256"}},
        "users": [{"id": user, "claims": {"groups": [group]}} for user, group, _ in DEMO_USERS],
        "apps": [
            {
                "client_id": DEMO_CLIENT,
                "redirect_uris": redirect_uris,
                # The console's "Se déconnecter" ends the session here, then comes back to the console.
                "post_logout_redirect_uris": [uri.removesuffix("/callback") for uri in redirect_uris],
            }
        ],
    }


async def bind_demo_groups(session: AsyncSession, issuer: str, *, created_by: str) -> None:
    """The identity bindings of the demo users' groups for that provider (`maillage run`, the console's
    end-to-end tests): the partner acts for the first demo organisation (none without demo listings),
    the département analyst for the Seine-Saint-Denis (93D). Bindings already active are kept."""
    from sqlmodel import select

    from directory import identity_bindings
    from directory.access import Role
    from directory.models import Organisation

    partner = (
        await session.exec(select(Organisation.id).where(Organisation.demo).order_by(Organisation.seed_key))
    ).first()
    bound = await identity_bindings.list_(session, issuer=issuer)
    active = {b.value for b in bound if not b.revoked_at}
    for _, group, role in DEMO_USERS:
        if group in active or (role == "partner" and partner is None):
            continue
        await identity_bindings.create(
            session,
            issuer=issuer,
            claim="groups",
            value=group,
            role=Role(role),
            organisation_id=partner if role == "partner" else None,
            collectivite_code="93D" if role == "department" else None,
            created_by=created_by,
        )
