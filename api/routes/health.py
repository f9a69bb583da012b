"""Liveness and readiness probes: no authentication, no data."""

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from psycopg import AsyncConnection

from directory.seeding import HOTLINE_SEED_KEY
from geo import territories

from ..db import get_reader
from ..errors import problem_response, problem_responses
from ..jobs import worker_alive
from ..migrations_runner import head_revision
from ..schemas import Health, Readiness

router = APIRouter(tags=["health"])


@router.get("/healthz", response_model=Health)
async def healthz() -> dict[str, str]:
    """The process is up."""
    return {"status": "ok"}


@router.get("/readyz", response_model=Readiness, responses=problem_responses(503))
async def readyz(request: Request, conn: Annotated[AsyncConnection, Depends(get_reader)]) -> JSONResponse:
    """The database answers, its schema is at the migration head this code expects, and the reference
    data the API acts on (the 119 unit's organisation) is loaded. `worker` says whether a worker is
    alive; its absence does not make this process unready (it serves without one), but alerts should
    watch it: without a worker handoffs stop expiring and webhooks stop leaving."""
    head = head_revision()
    try:
        current = await (await conn.execute("SELECT version_num FROM alembic_version")).fetchone()
    except Exception:  # noqa: BLE001 - any failure to query the database means "not ready"
        return problem_response(503, "unavailable", "the database is unreachable", headers={"Retry-After": "5"})
    version = current[0] if current else None
    if version != head:
        return problem_response(
            503,
            "unavailable",
            f"the database schema is at {version}, expected {head}: run the migrations",
            headers={"Retry-After": "30"},
        )
    hotline = await (
        await conn.execute("SELECT 1 FROM organisation WHERE seed_key = %s", (HOTLINE_SEED_KEY,))
    ).fetchone()
    if hotline is None:  # specialists act for it: without it every specialist request would fail
        return problem_response(
            503, "unavailable", "the reference data is not loaded: run `maillage seed`", headers={"Retry-After": "30"}
        )
    alive = await worker_alive(conn, request.app.state.settings)
    reference = await territories.reference(conn)
    return JSONResponse(
        {
            "status": "ready",
            "migration": head,
            "worker": "alive" if alive else "absent",
            "territories": reference["reference_year"] if reference else None,
        }
    )
