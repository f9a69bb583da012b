"""All token code: signing keys, issuing, verifying, and the published JWKS.

Access tokens are JWTs signed with ES256 (ECDSA P-256) under a `kid`; verification pins the algorithm,
requires iss/aud/exp/iat/sub/role, caps the lifetime at 15 minutes and the size at 4 KiB (RFC 8725).
PyJWT is used rather than python-jose, which is unmaintained and carries open algorithm-confusion
advisories. Private keys are generated on first use under var/keys (git-ignored); every key in the
directory is published, the newest one signs, so a key can be rotated by adding a newer file.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm

from directory.access import Principal, Role

from .private_files import read_or_create

ALGORITHM = "ES256"
TOKEN_TYPE = "at+jwt"  # RFC 9068: refuses ID tokens or other JWTs presented as access tokens
MAX_TOKEN_BYTES = 4096
_COLLECTIVITE_CODE = re.compile(r"^[0-9]{1,3}[A-Z]{1,2}$")  # 93D, 971D, 69M, 20R, 6AE, 972R


class InvalidToken(Exception):
    """Why a token was refused; the message is safe to return to the caller."""


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _thumbprint(public_jwk: dict[str, Any]) -> str:
    """RFC 7638 JWK thumbprint: a kid derived from the key itself, stable across restarts."""
    members = {k: public_jwk[k] for k in ("crv", "kty", "x", "y")}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return _b64(hashlib.sha256(canonical).digest())


@dataclass(frozen=True)
class SigningKey:
    kid: str
    private_key: ec.EllipticCurvePrivateKey
    public_jwk: dict[str, Any]


class KeyStore:
    def __init__(self, keys: list[SigningKey]) -> None:
        if not keys:
            raise ValueError("a key store needs at least one key")
        self._keys = {key.kid: key for key in keys}
        self.signing_key = keys[-1]

    @classmethod
    def load_or_create(cls, directory: Path) -> KeyStore:
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        files = sorted(directory.glob("*.pem"), key=lambda p: (p.stat().st_mtime, p.name))
        if not files:
            # One fixed name, so that processes starting together on an empty directory share one key.
            first = directory / "signing-first.pem"
            read_or_create(first, cls._generate)
            files = [first]
        return cls([cls._read(path) for path in files])

    @staticmethod
    def _generate() -> bytes:
        key = ec.generate_private_key(ec.SECP256R1())
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )

    @staticmethod
    def _read(path: Path) -> SigningKey:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError(f"{path} is not an EC P-256 private key")
        public_jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        kid = _thumbprint(public_jwk)
        return SigningKey(kid, key, {**public_jwk, "kid": kid, "alg": ALGORITHM, "use": "sig"})

    def public_key(self, kid: str) -> ec.EllipticCurvePublicKey | None:
        key = self._keys.get(kid)
        return key.private_key.public_key() if key else None

    def jwks(self) -> dict[str, Any]:
        return {"keys": [key.public_jwk for key in self._keys.values()]}


class TokenService:
    """Issues and verifies access tokens. Verified tokens are cached by their exact text (the
    signature check is the costly part); expiry is still checked on every use."""

    def __init__(self, keys: KeyStore, *, issuer: str, audience: str, max_ttl: int, leeway: int) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.max_ttl = max_ttl
        self.leeway = leeway
        self._cache: OrderedDict[str, tuple[Principal, float]] = OrderedDict()
        self._cache_size = 10_000

    def issue(
        self,
        *,
        subject: str,
        role: Role,
        organisation_id: uuid.UUID | None = None,
        collectivite_code: str | None = None,
        client_id: uuid.UUID | None = None,
        ttl: int | None = None,
        now: float | None = None,
    ) -> str:
        ttl = self.max_ttl if ttl is None else ttl
        if not 0 < ttl <= self.max_ttl:
            raise ValueError(f"ttl must be between 1 and {self.max_ttl} seconds")
        issued = int(now if now is not None else time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": self.audience,
            "sub": subject,
            "role": role.value,
            "iat": issued,
            "nbf": issued,
            "exp": issued + ttl,
            "jti": str(uuid.uuid4()),
        }
        if organisation_id is not None:
            claims["org"] = str(organisation_id)
        if collectivite_code is not None:
            claims["collectivite"] = collectivite_code
        if client_id is not None:
            claims["client_id"] = str(client_id)  # RFC 9068 §2.2
        _check_role_claims(claims)
        key = self.keys.signing_key
        return jwt.encode(claims, key.private_key, algorithm=ALGORITHM, headers={"kid": key.kid, "typ": TOKEN_TYPE})

    def verify(self, token: str) -> Principal:
        now = time.time()
        cached = self._cache.get(token)
        if cached is not None:
            principal, expires = cached
            if now <= expires + self.leeway:
                self._cache.move_to_end(token)
                return principal
            del self._cache[token]
            raise InvalidToken("the token has expired")
        principal, expires = self._decode(token)
        self._cache[token] = (principal, expires)
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return principal

    def _decode(self, token: str) -> tuple[Principal, float]:
        if len(token) > MAX_TOKEN_BYTES:
            raise InvalidToken("the token is too large")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("the token is malformed") from exc
        if header.get("alg") != ALGORITHM:
            raise InvalidToken(f"the token must be signed with {ALGORITHM}")
        if header.get("typ") != TOKEN_TYPE:
            raise InvalidToken(f"the token type must be {TOKEN_TYPE}")
        kid = header.get("kid")
        key = self.keys.public_key(kid) if isinstance(kid, str) else None
        if key is None:
            raise InvalidToken("the token is signed with an unknown key")
        claims = decode_verified(
            token,
            key,
            algorithm=ALGORITHM,
            audience=self.audience,
            issuer=self.issuer,
            leeway=self.leeway,
            max_lifetime=self.max_ttl,
            strict_aud=True,
        )
        return _check_role_claims(claims), float(claims["exp"])


def decode_verified(
    token: str,
    key: Any,
    *,
    algorithm: str,
    audience: str,
    issuer: str,
    leeway: int,
    max_lifetime: int,
    strict_aud: bool = False,
) -> dict[str, Any]:
    """The claims of a token whose header has been checked, once PyJWT has verified its signature,
    `iss`, `aud`, `exp`, `iat`, `nbf` and `sub`, and its lifetime is at most `max_lifetime`: the one
    translation of PyJWT's refusals into reasons a caller may read (ours and outside providers')."""
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[algorithm],
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={"require": ["iss", "aud", "exp", "iat", "sub"], "strict_aud": strict_aud},
        )
    except jwt.ExpiredSignatureError as exc:
        raise InvalidToken("the token has expired") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidToken("the token is not valid yet") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidToken(f"the token lacks the {exc.claim} claim") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidToken("the token is meant for another audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidToken("the token comes from an unknown issuer") from exc
    except (jwt.PyJWTError, TypeError, ValueError) as exc:  # TypeError: a key of another type
        raise InvalidToken("the token signature or claims are invalid") from exc
    if not isinstance(claims["exp"], int | float) or not isinstance(claims["iat"], int | float):
        raise InvalidToken("the token's exp and iat must be numbers")
    if claims["exp"] - claims["iat"] > max_lifetime:
        raise InvalidToken(f"the token lives longer than {max_lifetime} seconds")
    return claims


def _check_role_claims(claims: dict[str, Any]) -> Principal:
    try:
        role = Role(str(claims.get("role")))
    except ValueError as exc:
        raise InvalidToken("the token lacks a valid role claim") from exc
    subject = claims.get("sub")
    if not isinstance(subject, str) or not 0 < len(subject) <= 200:
        raise InvalidToken("the token lacks a valid sub claim")
    organisation_id = None
    if "org" in claims:
        try:
            organisation_id = uuid.UUID(str(claims["org"]))
        except ValueError as exc:
            raise InvalidToken("the org claim must be a UUID") from exc
    collectivite = claims.get("collectivite")
    if collectivite is not None and (
        not isinstance(collectivite, str) or not _COLLECTIVITE_CODE.fullmatch(collectivite)
    ):
        raise InvalidToken("the collectivite claim must be a collectivité code such as 93D or 69M")
    client_id = None
    if "client_id" in claims:
        try:
            client_id = uuid.UUID(str(claims["client_id"]))
        except ValueError as exc:
            raise InvalidToken("the client_id claim must be a UUID") from exc
    if role is Role.partner and organisation_id is None:
        raise InvalidToken("a partner token needs an org claim")
    if role is Role.department and collectivite is None:
        raise InvalidToken("a department token needs a collectivite claim")
    if role is not Role.partner:
        organisation_id = None  # only partners act for an organisation named by their token
    return Principal(
        subject=subject,
        role=role,
        organisation_id=organisation_id,
        collectivite_code=collectivite,
        client_id=client_id,
        issuer=str(claims.get("iss", "")),
    )
