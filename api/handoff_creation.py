"""Creating a handoff, end to end: the one place that orders journal, idempotency, creation,
notification and the answer, so the route stays a declaration.

Order matters: the Idempotency-Key is claimed in the creation's own transaction (a concurrent retry
blocks on it, then replays the stored answer); the journal row, the handoff, its first event and the
outbox rows commit together or not at all; the answer is the handoff as the sender may read it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import Request
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory import handoffs, revisions
from directory.access import Principal
from directory.pathway_models import Urgency
from directory.pathway_schemas import HandoffCreate
from sync import notify

from . import idempotency
from .audit import trail
from .etags import etag
from .links import absolute
from .responses import JSONText


async def create_handoff(
    request: Request,
    session: AsyncSession,
    conn: AsyncConnection,
    principal: Principal,
    body: HandoffCreate,
    idempotency_key: str | None,
) -> JSONText:
    key = idempotency.key_of(idempotency_key)
    async with trail(
        request, conn, principal, action="handoff.create", object_type="handoff", case_id=body.case_id
    ) as entry:
        stored = await idempotency.claim(
            session,
            principal=principal,
            key=key,
            fingerprint=idempotency.fingerprint(request, body.model_dump(mode="json")),
        )
        if stored is not None:
            await session.rollback()
            return JSONText(stored.body, status_code=stored.status, headers=stored.headers)
        within = {Urgency(k): v for k, v in request.app.state.settings.acknowledge_within().items()}
        try:
            handoff = await handoffs.create(session, body, actor=principal, acknowledge_within=within)
        except Exception:
            await session.rollback()  # releases the key: a refused request may be corrected and retried
            raise
        entry.object_id = handoff.id
        await notify.handoff_created(session, handoff)
        view, version = await handoffs.get(
            await revisions.driver(session), handoff.id, actor=principal, now=datetime.now(UTC)
        )
        headers = {"ETag": etag(version), "Location": absolute(f"/v1/handoffs/{handoff.id}")}
        await idempotency.store(session, principal=principal, key=key, status=201, body=view, headers=headers)
        entry.in_transaction(session, status=201)
        await session.commit()
    return JSONText(view, status_code=201, headers=headers)
