"""Settings, read once from the environment by the composition root and passed down as values.

Domain packages never import this module: they receive what they need as arguments.
"""

from datetime import timedelta
from functools import cached_property
from pathlib import Path

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


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

    token_issuer: str = "https://maillage.local"
    token_audience: str = "maillage-api"
    # RFC 8725 / DESIGN §3: access tokens live at most 15 minutes.
    token_max_ttl_seconds: int = Field(default=900, ge=30, le=900)
    token_leeway_seconds: int = Field(default=30, ge=0, le=60)
    keys_dir: Path | None = None

    # Resource limits (OWASP API4).
    max_body_bytes: int = 256 * 1024
    statement_timeout_ms: int = 5000
    writes_per_minute: int = Field(default=120, ge=1)
    token_requests_per_minute: int = Field(default=30, ge=1)
    db_pool_size: int = 10

    # Care pathways: how soon a handoff must be acknowledged, by urgency; how long an unanswered one
    # stays overdue before the system expires it.
    acknowledge_immediate_minutes: int = Field(default=60, ge=1)
    acknowledge_within_24h_hours: int = Field(default=24, ge=1)
    acknowledge_routine_days: int = Field(default=7, ge=1)
    expire_after_overdue_hours: int = Field(default=72, ge=1)
    # Retention (CNIL): closed cases, then audit rows.
    case_retention_years: int = Field(default=3, ge=1, le=10)
    audit_retention_days: int = Field(default=365, ge=180, le=3650)
    # Webhooks: loopback endpoints only for tests on one machine; how often the server delivers.
    webhooks_allow_loopback: bool = False
    webhook_delivery_interval_seconds: float = Field(default=5.0, gt=0)
    deliver_webhooks_in_process: bool = True

    # Statistics: cells under k distinct cases are suppressed (never below 5). Queries are few and
    # national ones cost a second of database time: a per-subject limit keeps differencing and load slow.
    stats_k: int = Field(default=10, ge=5)
    stats_queries_per_minute: int = Field(default=30, ge=1)

    log_json: bool = False

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
