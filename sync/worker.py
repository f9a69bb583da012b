"""Delivering the outbox: the worker's `webhooks.deliver` job (api/jobs.py) and `maillage sync deliver`."""

from __future__ import annotations

import httpx
import structlog
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.ext.asyncio.session import AsyncSession

from .outbound import DeliveryReport, deliver_due
from .webhooks import Resolver, SecretBox

log = structlog.get_logger("maillage.webhooks")


async def deliver_once(
    engine: AsyncEngine,
    http: httpx.AsyncClient,
    box: SecretBox,
    *,
    resolve: Resolver,
    allow_loopback: bool,
    max_batches: int = 50,
) -> DeliveryReport:
    """Deliver what is due now, batch by batch, each batch in its own transaction; at most `max_batches`
    (a run ends even under a steady stream of events: the next one goes on)."""
    total = DeliveryReport()
    for _ in range(max_batches):
        async with AsyncSession(engine, expire_on_commit=False) as session:
            report = await deliver_due(session, http, box, resolve=resolve, allow_loopback=allow_loopback)
            await session.commit()
        total.delivered += report.delivered
        total.failed += report.failed
        total.dead += report.dead
        if report.delivered + report.failed + report.dead == 0:
            break
    return total
