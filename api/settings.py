"""Settings, read once from the environment by the composition root and passed down as values.

Domain packages never import this module: they receive what they need as arguments.
"""

from datetime import timedelta
from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal, Self
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
# Signature algorithms an outside provider may be allowed: asymmetric only (RFC 8725 §3.1-3.2: never
# "none", never a shared secret that a provider's JWKS cannot carry).
ASYMMETRIC_ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")


class OidcIssuer(BaseModel):
    """An outside OpenID provider whose access tokens the API accepts (api/oidc.py). Its people act as
    the identity bindings name (directory/identity_bindings.py), by the values of `claims`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    issuer: str = Field(max_length=300, description="Exactly the `iss` its tokens carry.")
    audience: str = Field(min_length=1, max_length=300, description="The `aud` a token for Maillage carries.")
    algorithms: tuple[str, ...] = Field(default=("RS256", "ES256"), min_length=1)
    claims: tuple[str, ...] = Field(default=("groups",), min_length=1, description="Claims bindings name values of.")
    # Our own tokens live 15 minutes (DESIGN §3); a provider's may live as long as this, at most an hour:
    # a person removed from a group at their provider keeps access until their token expires.
    max_token_lifetime_seconds: int = Field(default=900, ge=60, le=3600)
    leeway_seconds: int = Field(default=30, ge=0, le=60)

    @field_validator("issuer")
    @classmethod
    def _issuer(cls, value: str) -> str:
        parts = urlsplit(value)
        loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
        if parts.scheme != "https" and not (parts.scheme == "http" and loopback):
            raise ValueError(f"an issuer is an https URL (http only on the loopback, for local runs): {value!r}")
        if parts.query or parts.fragment or parts.username:
            raise ValueError(f"an issuer has no query, fragment or user: {value!r}")
        return value

    @field_validator("algorithms")
    @classmethod
    def _algorithms(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        refused = [alg for alg in value if alg not in ASYMMETRIC_ALGORITHMS]
        if refused:
            raise ValueError(f"only asymmetric signature algorithms may be allowed, not {', '.join(refused)}")
        return value

    @property
    def discovery_url(self) -> str:
        return self.issuer.rstrip("/") + "/.well-known/openid-configuration"


def _standards_dir() -> Path:
    """`../shared/standards` beside the checkout; for a clone made elsewhere (a CI run's), the
    machine's shared folder."""
    beside = REPO_ROOT.parent / "shared" / "standards"
    machine = Path("/work/shared/standards")
    return beside if beside.is_dir() or not machine.is_dir() else machine


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAILLAGE_", extra="ignore")

    # Production path: when set, no local cluster is managed and no demo data is loaded.
    database_url: str | None = Field(
        default=None, validation_alias=AliasChoices("DATABASE_URL", "MAILLAGE_DATABASE_URL")
    )
    # Migrations, seeds and retention purges need the schema owner; the API only its own role.
    # Defaults to DATABASE_URL when that is set.
    owner_database_url: str | None = None
    # Where local state lives: the managed cluster, signing keys, generated secrets. Git-ignored.
    var_dir: Path = REPO_ROOT / "var"
    port: int = Field(default=8000, validation_alias=AliasChoices("PORT", "MAILLAGE_PORT"))
    host: str = "127.0.0.1"
    # Every link the API writes (`next`, `Location`) starts with this scheme://host[:port], never with
    # what a request's Host header says; requests for any other host are refused (400 unknown_host).
    # Defaults to the address `maillage run` serves on (host and PORT). No path, query or user info.
    public_base_url: str = ""
    # Further Host values accepted (not used in links), e.g. an internal name behind the proxy:
    # MAILLAGE_ALLOWED_HOSTS=api.internal,api.internal:8443
    allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()

    token_issuer: str = "https://maillage.local"
    token_audience: str = "maillage-api"
    # RFC 8725 / DESIGN §3: access tokens live at most 15 minutes.
    token_max_ttl_seconds: int = Field(default=900, ge=30, le=900)
    token_leeway_seconds: int = Field(default=30, ge=0, le=60)
    keys_dir: Path | None = None
    # Outside OpenID providers (the 119's, the départements', the associations'), as JSON:
    # MAILLAGE_OIDC_ISSUERS='[{"issuer": "https://login.example.fr", "audience": "maillage-api",
    #                         "algorithms": ["RS256"], "claims": ["groups"]}]'
    oidc_issuers: tuple[OidcIssuer, ...] = ()
    # `maillage run` (local, with its demo data) starts a local OpenID provider on this port.
    local_oidc_port: int = Field(default=4000, ge=1, le=65535)

    # Resource limits (OWASP API4).
    max_body_bytes: int = 256 * 1024
    statement_timeout_ms: int = 5000
    writes_per_minute: int = Field(default=120, ge=1)
    token_requests_per_minute: int = Field(default=30, ge=1)
    db_pool_size: int = 10
    # Server-side prepared statements on the reader connections (psycopg prepares a statement from its
    # fifth run on a connection): a search then skips most of its planning, its median falling from
    # ~40 to ~30 ms on 1M services. Turn off behind a pooler that cannot carry them, such as
    # PgBouncer < 1.21 in transaction mode.
    prepared_statements: bool = True

    # Care pathways: how soon a handoff must be acknowledged, by urgency; how long an unanswered one
    # stays overdue before the system expires it.
    acknowledge_immediate_minutes: int = Field(default=60, ge=1)
    acknowledge_within_24h_hours: int = Field(default=24, ge=1)
    acknowledge_routine_days: int = Field(default=7, ge=1)
    expire_after_overdue_hours: int = Field(default=72, ge=1)
    # Retention (CNIL): closed cases, then audit rows.
    case_retention_years: int = Field(default=3, ge=1, le=10)
    audit_retention_days: int = Field(default=365, ge=180, le=3650)
    # Webhooks: loopback endpoints only for tests on one machine.
    webhooks_allow_loopback: bool = False

    # The worker (api/jobs.py): how often it says it is alive; after how long without a word it is
    # taken for dead and its jobs are run again; the period of the tasks that run "every minute"
    # (handoff expiry, webhook delivery, the stalled-job check), a divisor of 60.
    worker_heartbeat_seconds: float = Field(default=10.0, gt=0, le=60)
    worker_stalled_after_seconds: float = Field(default=30.0, gt=0)
    tick_seconds: int = Field(default=60, ge=1, le=60)

    # Prometheus metrics (api/metrics.py) on a port of their own, for the operator's scraper only;
    # 0 turns them off. `maillage serve` serves them.
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(default=9464, ge=0, le=65535)
    # Send the session settings (statement timeout, no JIT, UTC) in each connection's startup packet.
    # PgBouncer in transaction mode (1.18, Debian 12's) refuses that `options` parameter: behind it,
    # turn this off (with `prepared_statements`); the application role's own defaults, set by the
    # migrations, then apply, with their 5 s statement timeout.
    startup_options: bool = True

    # Where a partner's public address without a point is placed (sync/geocoding.py): the IGN
    # Géoplateforme geocoder; empty turns it off (the commune's point is used). Safe houses' addresses
    # and specialists' search places are never sent, whatever this says.
    geocoding_url: str = "https://data.geopf.fr/geocodage"

    @field_validator("geocoding_url")
    @classmethod
    def _geocoding_over_https(cls, value: str) -> str:
        if value and not value.startswith("https://"):
            raise ValueError("the geocoder is reached over https only (addresses travel in the query)")
        return value.rstrip("/")

    # Open data in (`maillage import data-inclusion`): the API token data·inclusion gives on request,
    # for reading its API rather than its published files.
    data_inclusion_token: SecretStr | None = None

    # Open data out: where the official schemas of the exchange standards are read from (HSDS 3.0 in
    # hsds-3.0/, CC BY-SA 4.0), to check exports against them; never copied into the project.
    standards_dir: Path = Field(default_factory=lambda: _standards_dir())

    # Statistics: cells under k distinct cases are suppressed (never below 5). Queries are few and
    # national ones cost a second of database time: a per-subject limit keeps differencing and load slow.
    stats_k: int = Field(default=10, ge=5)
    stats_queries_per_minute: int = Field(default=30, ge=1)

    # The console (/console, api/console.py): its look, its login and when it locks itself.
    # `dsfr` is the State's design system, whose licence restricts it to State websites (the 119 on a
    # .gouv.fr domain); every other operator keeps `neutral`, an accessible look of its own.
    console_theme: Literal["neutral", "dsfr"] = "neutral"
    # The OpenID provider people log in with (authorization code + PKCE, a public client), and the
    # resource indicator its access tokens for this API are asked for. Unset: the console says login is
    # not configured. `maillage run` points it at the local provider.
    console_oidc_issuer: str = ""
    console_client_id: str = "maillage-console"
    console_oidc_resource: str = ""
    # Minutes without a key press or a click before the console forgets its token and what it showed.
    console_lock_minutes: int = Field(default=10, ge=1, le=60)
    # A MapLibre style URL for the basemap. Empty (the default): Maillage's own territory tiles only, so
    # no outside server learns where anyone looks.
    console_map_style_url: str = ""
    # Where the built console is (`make` builds console/ into console/dist).
    console_dir: Path = REPO_ROOT / "console" / "dist"

    log_json: bool = False

    @field_validator("allowed_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return tuple(part.strip() for part in value.split(",") if part.strip()) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _worker_timing(self) -> Self:
        if 60 % self.tick_seconds:
            raise ValueError("tick_seconds must divide 60 (it is a cron step)")
        if self.worker_stalled_after_seconds < 2 * self.worker_heartbeat_seconds:
            raise ValueError("a worker is taken for dead after at least two missed heartbeats")
        return self

    @model_validator(mode="after")
    def _outside_issuers(self) -> Self:
        issuers = [config.issuer for config in self.oidc_issuers]
        if self.token_issuer in issuers:
            raise ValueError("an outside OpenID provider cannot have Maillage's own issuer (token_issuer)")
        if len(set(issuers)) != len(issuers):
            raise ValueError("each OpenID provider is configured once")
        return self

    @model_validator(mode="after")
    def _public_base(self) -> Self:
        if not self.public_base_url:
            host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host  # noqa: S104 - a wildcard bind
            host = f"[{host}]" if ":" in host else host
            self.public_base_url = f"http://{host}:{self.port}"
        self.public_base_url = normalise_base_url(self.public_base_url)
        return self

    @cached_property
    def keys_path(self) -> Path:
        return self.keys_dir or self.var_dir / "keys"

    @property
    def secrets_path(self) -> Path:
        return self.var_dir / "secrets"

    def acknowledge_within(self) -> dict[str, timedelta]:
        return {
            "immediate": timedelta(minutes=self.acknowledge_immediate_minutes),
            "within_24h": timedelta(hours=self.acknowledge_within_24h_hours),
            "routine": timedelta(days=self.acknowledge_routine_days),
        }


def normalise_base_url(url: str) -> str:
    """scheme://host[:port] in lower case, without a trailing slash; anything else is a configuration error."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"public_base_url must be an http(s) URL with a host, not {url!r}")
    if parts.username or parts.password or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError(f"public_base_url is scheme://host[:port] only (no user, path, query or fragment): {url!r}")
    parts.port  # noqa: B018 - raises ValueError on a malformed port
    return f"{parts.scheme}://{parts.netloc.lower()}"
