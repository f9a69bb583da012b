"""The job system's health, for admins: what the worker (api/jobs.py) has to do and has done.

Admins only: queue figures follow handoff activity. The public /readyz only says whether a worker is
alive."""

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from directory.access import Principal, Role

from .. import jobs
from ..auth import Allow
from ..db import ReaderDep
from ..errors import problem_responses
from ..schemas import JobsHealth

router = APIRouter(prefix="/v1", tags=["operations"])


@router.get("/jobs/health", response_model=JobsHealth, responses=problem_responses(401, 403))
async def jobs_health(
    request: Request, conn: ReaderDep, _: Annotated[Principal, Depends(Allow(Role.admin))]
) -> dict[str, Any]:
    """Queue depth (waiting, due, running, failed), how long the oldest due job has waited, live
    workers and their last heartbeat, and each periodic task's schedule, last success and last
    failure."""
    return await jobs.health(conn, request.app.state.settings)
