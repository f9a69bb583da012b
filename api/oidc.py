"""Access tokens from outside OpenID providers: discovery, keys, verification.

Each configured provider (`Settings.oidc_issuers`) is discovered through its
`/.well-known/openid-configuration` (whose `issuer` must be the configured one, OpenID Connect
Discovery §4.3) and its JWKS fetched from the `jwks_uri` it names, through the application's injected
httpx client (https only, but for a provider on the loopback; 256 KiB and 10 s at most). Keys are
cached for `KEYS_MAX_AGE`; a token signed under a `kid` the cache does not hold makes it fetch again —
at most once per `REFETCH_SECONDS` per provider, so a stream of forged kids cannot make Maillage hammer
the provider — and the new set replaces the old one: a key the provider withdrew stops verifying, and
the tokens verified under that provider's keys are verified again. While a provider cannot be read,
its tokens get 503, not a refusal.

A token is verified as RFC 9068 and RFC 8725 ask: `typ` at+jwt (an ID token is not an access token),
the algorithm among those allowed for that provider (asymmetric only) and fit for the key of its `kid`
(type, curve, the key's own `alg`), `iss`,
`aud`, `exp`, `iat` and `sub` required, and a lifetime no longer than the provider's maximum. What it
proves is an `ExternalIdentity`: who (issuer, subject) and the values of the provider's mapped
claims; api/auth.py turns it into a role through the identity bindings.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx
import jwt

from .settings import OidcIssuer
from .tokens import MAX_TOKEN_BYTES, TOKEN_TYPE, InvalidToken, decode_verified

REFETCH_SECONDS = 30.0
KEYS_MAX_AGE = 600.0  # a key the provider withdraws stops verifying within this (or at once, on a new kid)
FETCH_TIMEOUT = 5.0
MAX_DOCUMENT_BYTES = 256 * 1024
_TYPES = (TOKEN_TYPE, "application/" + TOKEN_TYPE)
# The key type (and curve) each algorithm needs: a token naming RS256 with an EC key's kid is refused
# before PyJWT sees it (RFC 8725 §3.1: a key is used with one algorithm).
_KEY_TYPES = {
    **{alg: ("RSA", None) for alg in ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512")},
    "ES256": ("EC", "P-256"),
    "ES384": ("EC", "P-384"),
    "ES512": ("EC", "P-521"),
    "EdDSA": ("OKP", None),
}


class ProviderUnavailable(Exception):
    """The provider's discovery document or keys could not be read: the token can be neither accepted
    nor refused (the message is safe to return)."""


@dataclass(frozen=True)
class ExternalIdentity:
    """A person or system an outside provider vouches for, with its mapped claims' values."""

    issuer: str
    subject: str
    claims: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ProviderKeys:
    """One provider's signing keys, as its JWKS publishes them."""

    def __init__(self, config: OidcIssuer, http: httpx.AsyncClient, *, refetch_seconds: float) -> None:
        self.config = config
        self.http = http
        self.refetch_seconds = refetch_seconds
        self.fetches = 0  # for the operator's logs and the tests
        self.on_withdrawn: Callable[[str], None] | None = None
        self._keys: dict[str, tuple[jwt.PyJWK, dict[str, Any]]] = {}
        self._fetched_at: float | None = None
        self._failure: str | None = None
        self._lock = asyncio.Lock()

    async def key(self, kid: str) -> tuple[jwt.PyJWK, dict[str, Any]] | None:
        """The key of this kid with its JWK, fetching the set again when it is older than
        KEYS_MAX_AGE or lacks the kid (at most once per `refetch_seconds`). While the provider cannot be
        read, ProviderUnavailable: its tokens are neither accepted nor refused."""
        now = time.monotonic()
        stale = self._fetched_at is None or now - self._fetched_at >= KEYS_MAX_AGE
        if kid in self._keys and not stale and self._failure is None:
            return self._keys[kid]
        async with self._lock:  # concurrent requests share one fetch
            now = time.monotonic()
            stale = self._fetched_at is None or now - self._fetched_at >= KEYS_MAX_AGE
            if kid in self._keys and not stale and self._failure is None:
                return self._keys[kid]
            if self._fetched_at is None or now - self._fetched_at >= self.refetch_seconds:
                await self._fetch()
            elif self._failure is not None:
                raise ProviderUnavailable(self._failure)
        return self._keys.get(kid)

    async def _fetch(self) -> None:
        self._fetched_at = time.monotonic()  # a failed fetch waits its turn too
        self.fetches += 1
        try:
            keys = await asyncio.wait_for(self._read_keys(), timeout=2 * FETCH_TIMEOUT)
        except ProviderUnavailable as exc:
            self._failure = str(exc)
            raise
        except Exception as exc:  # a timeout, a malformed URL or document: never a 500
            self._failure = "the identity provider could not be reached; try again shortly"
            raise ProviderUnavailable(self._failure) from exc
        self._failure = None
        withdrawn = set(self._keys) - set(keys)
        self._keys = keys
        if withdrawn and self.on_withdrawn is not None:
            self.on_withdrawn(self.config.issuer)

    async def _read_keys(self) -> dict[str, tuple[jwt.PyJWK, dict[str, Any]]]:
        discovery = await self._get_json(self.config.discovery_url)
        if discovery.get("issuer") != self.config.issuer:
            raise ProviderUnavailable("the identity provider's discovery document names another issuer")
        jwks_uri = discovery.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not _same_security(self.config.issuer, jwks_uri):
            raise ProviderUnavailable("the identity provider's discovery document names no usable jwks_uri")
        document = await self._get_json(jwks_uri)
        listed = document.get("keys")
        entries: list[Any] = listed if isinstance(listed, list) else []
        kids = [e.get("kid") for e in entries if isinstance(e, dict)]
        keys: dict[str, tuple[jwt.PyJWK, dict[str, Any]]] = {}
        for entry in entries:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str) or entry.get("use", "sig") != "sig":
                continue
            if kids.count(entry["kid"]) > 1:
                continue  # two keys under one kid: neither can be told apart, both are refused
            try:
                keys[entry["kid"]] = (jwt.PyJWK(entry), entry)
            except (jwt.PyJWTError, ValueError, TypeError):
                continue  # a key type or curve PyJWT does not know: tokens signed with it are refused
        return keys

    async def _get_json(self, url: str) -> dict[str, Any]:
        try:
            async with self.http.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=False) as response:
                response.raise_for_status()
                body = b""
                async for chunk in response.aiter_bytes():
                    body += chunk
                    if len(body) > MAX_DOCUMENT_BYTES:
                        raise ProviderUnavailable("the identity provider's document is too large")
            document = json.loads(body)
        except ProviderUnavailable:
            raise
        except (httpx.HTTPError, ValueError, RecursionError) as exc:
            raise ProviderUnavailable("the identity provider could not be reached; try again shortly") from exc
        if not isinstance(document, dict):
            raise ProviderUnavailable("the identity provider answered something else than a JSON object")
        return document


def _same_security(issuer: str, url: str) -> bool:
    """A JWKS is fetched over https — or over http only for an issuer on the loopback (local runs)."""
    target = urlsplit(url)
    if target.scheme == "https":
        return bool(target.hostname)
    source = urlsplit(issuer)
    loopback = ("127.0.0.1", "localhost", "::1")
    return target.scheme == "http" and source.hostname in loopback and target.hostname in loopback


def _key_fits(algorithm: str, jwk: dict[str, Any]) -> bool:
    kty, curve = _KEY_TYPES.get(algorithm, (None, None))
    if jwk.get("kty") != kty or (curve is not None and jwk.get("crv") != curve):
        return False
    return jwk.get("alg") in (None, algorithm)


class OidcVerifier:
    """Verifies the access tokens of the configured providers. Verified tokens are cached by their exact
    text until they expire (the signature check is the costly part)."""

    def __init__(
        self, issuers: Sequence[OidcIssuer], http: httpx.AsyncClient, *, refetch_seconds: float = REFETCH_SECONDS
    ) -> None:
        self.providers = {
            config.issuer: ProviderKeys(config, http, refetch_seconds=refetch_seconds) for config in issuers
        }
        for provider in self.providers.values():
            provider.on_withdrawn = self._forget
        self._cache: OrderedDict[str, tuple[ExternalIdentity, float, int]] = OrderedDict()
        self._cache_size = 10_000

    def _forget(self, issuer: str) -> None:
        """A provider withdrew a key: the tokens verified under its keys are verified again."""
        for token in [t for t, (identity, _, _) in self._cache.items() if identity.issuer == issuer]:
            del self._cache[token]

    def owns(self, issuer: object) -> bool:
        return isinstance(issuer, str) and issuer in self.providers

    async def verify(self, token: str) -> ExternalIdentity:
        cached = self._cache.get(token)
        if cached is not None:
            identity, expires, leeway = cached
            if time.time() <= expires + leeway:
                self._cache.move_to_end(token)
                return identity
            del self._cache[token]
            raise InvalidToken("the token has expired")
        identity, expires, leeway = await self._decode(token)
        self._cache[token] = (identity, expires, leeway)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return identity

    async def _decode(self, token: str) -> tuple[ExternalIdentity, float, int]:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("the token is too large")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token is malformed") from exc
        provider = self.providers.get(unverified.get("iss"))  # type: ignore[arg-type]
        if provider is None:
            raise InvalidToken("the token comes from an unknown issuer")
        config = provider.config
        algorithm = header.get("alg")
        if algorithm not in config.algorithms:
            raise InvalidToken(f"the token's algorithm is not one this issuer may use ({', '.join(config.algorithms)})")
        if str(header.get("typ", "")).lower() not in _TYPES:
            raise InvalidToken(f"the token type must be {TOKEN_TYPE}")
        kid = header.get("kid")
        found = await provider.key(kid) if isinstance(kid, str) else None
        if found is None:
            raise InvalidToken("the token is signed with a key its issuer does not publish")
        key, jwk = found
        if not _key_fits(algorithm, jwk):
            raise InvalidToken("the token's algorithm does not match its key")
        claims = decode_verified(
            token,
            key.key,
            algorithm=algorithm,
            audience=config.audience,
            issuer=config.issuer,
            leeway=config.leeway_seconds,
            max_lifetime=config.max_token_lifetime_seconds,
        )
        subject = claims["sub"]
        if not isinstance(subject, str) or not 0 < len(subject) <= 200:
            raise InvalidToken("the token lacks a valid sub claim")
        mapped: dict[str, tuple[str, ...]] = {}
        for name in config.claims:
            value = claims.get(name)
            if value is None:
                continue
            values = (value,) if isinstance(value, str) else value
            if not isinstance(values, list | tuple) or not all(isinstance(v, str) and len(v) <= 200 for v in values):
                raise InvalidToken(f"the {name} claim must be a string or a list of strings")
            mapped[name] = tuple(values)
        if not mapped:
            raise InvalidToken(f"the token lacks the {' or '.join(config.claims)} claim")
        identity = ExternalIdentity(issuer=config.issuer, subject=subject, claims=mapped)
        return identity, float(claims["exp"]), config.leeway_seconds


def unbindable(issuers: Sequence[OidcIssuer], issuer: str, claim: str) -> tuple[str, str] | None:
    """Why a binding of (issuer, claim) would never apply — a provider the settings do not name, or a
    claim they do not map — as (field, reason); None when it can. For the API and the CLI alike."""
    configured = {config.issuer: config for config in issuers}
    if issuer not in configured:
        return "issuer", "not a configured OpenID provider (MAILLAGE_OIDC_ISSUERS)"
    if claim not in configured[issuer].claims:
        return "claim", f"not one of this provider's mapped claims ({', '.join(configured[issuer].claims)})"
    return None
