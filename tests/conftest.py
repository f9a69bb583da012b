"""Fixtures: a real PostGIS (the project's managed cluster), the app driven in-process over ASGI, and
tokens signed by the app's own key store."""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from fastapi import FastAPI
from psycopg import AsyncConnection
from sqlalchemy.ext.asyncio import AsyncConnection as SAConnection
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from api.app import create_app, reset_rate_limits
from api.cluster import Cluster
from api.db import get_reader, get_session
from api.settings import REPO_ROOT, OidcIssuer, Settings
from directory.access import Role
from tests.database import create_test_database, ensure_template, plain


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    cluster = Cluster(REPO_ROOT / "var")
    cluster.start()
    ensure_template(cluster)
    return cluster


@pytest.fixture(scope="session", autouse=True)
def schemathesis_runs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[concurrent.futures.Future[Any] | None]:
    """The Schemathesis runs (tests/test_schemathesis.py), started with the session when that module is
    selected: about four minutes of servers and CLIs on databases of their own, which go on beside the
    other tests instead of after them. Waited for before the session ends."""
    if not any(item.path.name == "test_schemathesis.py" for item in request.session.items):
        yield None
        return
    from tests.test_schemathesis import start

    runs = start(request.getfixturevalue("cluster"), tmp_path_factory.mktemp("schemathesis"))
    yield runs
    concurrent.futures.wait([runs])


@pytest.fixture(scope="session")
def database_name(cluster: Cluster) -> Iterator[str]:
    name = create_test_database(cluster)
    yield name
    cluster.drop_database(name)


@pytest.fixture(scope="session")
def database_url(cluster: Cluster, database_name: str) -> str:
    """The application role's URL, as in production: tests see the same grants the API has."""
    return cluster.app_url(database_name)


@pytest.fixture(scope="session")
def owner_url(cluster: Cluster, database_name: str) -> str:
    return cluster.url(database_name)


@pytest.fixture
async def owner(owner_url: str) -> AsyncIterator[AsyncConnection]:
    """The schema owner, for what only triggers and commands write (calendars, coverage), in a
    transaction that is rolled back."""
    conn = await psycopg.AsyncConnection.connect(plain(owner_url))
    try:
        yield conn
    finally:
        await conn.rollback()
        await conn.close()


@pytest.fixture(scope="session")
def settings(database_url: str, tmp_path_factory: pytest.TempPathFactory) -> Settings:
    var = tmp_path_factory.mktemp("var")
    return Settings(
        database_url=database_url,
        var_dir=var,
        keys_dir=var / "keys",
        public_base_url="http://maillage.test",
        # Tests date their handoffs: statistics counted from handoffs refuse months retention may have
        # emptied, and the longest retention keeps those dates in reach for years.
        case_retention_years=10,
        # A provider whose bindings admins may manage (never reached: tests/api/test_oidc.py runs a real one).
        oidc_issuers=(OidcIssuer(issuer="https://login.example.test", audience="maillage-api"),),
        # No outside call from tests; tests/api/test_location_geocoding.py installs a recorded geocoder.
        geocoding_url="",
    )


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url, pool_size=5)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[SAConnection]:
    """One connection per test, inside a transaction that is always rolled back."""
    async with engine.connect() as conn:
        transaction = await conn.begin()
        yield conn
        await transaction.rollback()


@pytest.fixture
async def session(connection: SAConnection) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(
        bind=connection, join_transaction_mode="create_savepoint", expire_on_commit=False
    ) as session:
        yield session


@pytest.fixture
async def reader(connection: SAConnection) -> AsyncConnection:
    """The hot-path connection, here the test's own: it sees what the test wrote."""
    raw = await connection.get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


@pytest.fixture(scope="session")
def base_app(settings: Settings) -> FastAPI:
    return create_app(settings)


@pytest.fixture
def app(base_app: FastAPI, session: AsyncSession, reader: AsyncConnection) -> Iterator[FastAPI]:
    """The app, its database dependencies bound to this test's rolled-back transaction."""

    async def _session() -> AsyncIterator[AsyncSession]:
        yield session

    async def _reader() -> AsyncIterator[AsyncConnection]:
        yield reader

    base_app.dependency_overrides[get_session] = _session
    base_app.dependency_overrides[get_reader] = _reader
    reset_rate_limits(base_app)
    yield base_app
    base_app.dependency_overrides.clear()


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://maillage.test") as client:
        yield client


class Tokens:
    def __init__(self, app: FastAPI) -> None:
        self._service = app.state.tokens

    def __call__(
        self,
        role: Role | str,
        *,
        org: uuid.UUID | None = None,
        collectivite: str | None = None,
        ttl: int | None = None,
        subject: str = "test-user",
    ) -> dict[str, str]:
        """Authorization headers for a caller of this role."""
        role = Role(role)
        if role is Role.partner and org is None:
            org = uuid.uuid4()
        if role is Role.department and collectivite is None:
            collectivite = "93D"
        token = self._service.issue(
            subject=subject, role=role, organisation_id=org, collectivite_code=collectivite, ttl=ttl
        )
        return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def auth(app: FastAPI) -> Tokens:
    return Tokens(app)


@pytest.fixture
def specialist(auth: Tokens) -> dict[str, str]:
    return auth("specialist")


def data_path(name: str) -> Path:
    return Path(__file__).parent / "data" / name


@pytest.fixture
async def live(cluster: Cluster, settings: Settings) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    """The app on a database of its own, with its real pools and committed transactions: for tests of
    what only real concurrency shows."""
    name = create_test_database(cluster, suffix="_live")
    app = create_app(
        settings.model_copy(
            update={
                "database_url": cluster.app_url(name),
                "db_pool_size": 20,
                "public_base_url": "http://maillage.live",
            }
        )
    )
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
            async with httpx.AsyncClient(transport=transport, base_url="http://maillage.live") as client:
                yield app, client
    finally:
        cluster.drop_database(name)
