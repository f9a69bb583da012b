"""Database access: a SQLAlchemy async engine for transactional work, a psycopg pool for hot reads.

Hot read paths (resolve, search, stats) build their JSON in SQL; SQLAlchemy's per-statement overhead
and the BEGIN/ROLLBACK round trips of a session cost more than the query itself there, so they run
on autocommit psycopg connections from their own pool (one statement, one round trip). Everything
that writes goes through an `AsyncSession`, committed explicitly by the route before it returns
(a yield dependency's exit runs after the response is sent).

Both are created in the app's lifespan: async engines and pools bind to the running event loop.
"""

from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import Depends, Request
from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession


def libpq_url(url: str) -> str:
    """The URL psycopg takes (postgresql://) from the one SQLAlchemy takes (postgresql+psycopg://)."""
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


def _options(statement_timeout_ms: int) -> str:
    # JIT compiles a search's feature expressions for ~85 ms to save a few: off for an OLTP workload.
    return f"-c statement_timeout={statement_timeout_ms} -c timezone=UTC -c jit=off"


def connect_kwargs(
    statement_timeout_ms: int, *, application_name: str, startup_options: bool = True, prepared_statements: bool = True
) -> dict[str, Any]:
    """libpq parameters of every connection. Behind a transaction pooler (PgBouncer) neither the startup
    `options` nor server-side prepared statements survive: then the role's defaults set the session
    (migration d4e6b0c1a2f9) and every statement is planned each time (Settings.prepared_statements)."""
    kwargs: dict[str, Any] = {"application_name": application_name}
    if startup_options:
        kwargs["options"] = _options(statement_timeout_ms)
    # psycopg's default threshold (5: prepared from a statement's fifth run on a connection), or never.
    kwargs["prepare_threshold"] = 5 if prepared_statements else None
    return kwargs


def make_engine(
    url: str,
    *,
    pool_size: int,
    statement_timeout_ms: int,
    startup_options: bool = True,
    prepared_statements: bool = True,
    application_name: str = "maillage-api",
) -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        # An error's message never carries its statement's values (case fields), in logs or anywhere.
        hide_parameters=True,
        connect_args=connect_kwargs(
            statement_timeout_ms,
            application_name=application_name,
            startup_options=startup_options,
            prepared_statements=prepared_statements,
        ),
    )


def make_reader_pool(
    url: str, *, size: int, statement_timeout_ms: int, startup_options: bool = True, prepared_statements: bool = True
) -> AsyncConnectionPool:
    return AsyncConnectionPool(
        libpq_url(url),
        min_size=size,
        max_size=size,
        kwargs={
            "autocommit": True,
            **connect_kwargs(
                statement_timeout_ms,
                application_name="maillage-api-reader",
                startup_options=startup_options,
                prepared_statements=prepared_statements,
            ),
        },
        open=False,
        name="reader",
        timeout=5,  # waiting longer for a connection only piles requests up: 503 instead
    )


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with AsyncSession(request.app.state.engine, expire_on_commit=False) as session:
        yield session


async def get_reader(request: Request) -> AsyncIterator[AsyncConnection]:
    async with request.app.state.reader.connection() as conn:
        yield conn


SessionDep = Annotated[AsyncSession, Depends(get_session)]
ReaderDep = Annotated[AsyncConnection, Depends(get_reader)]
