"""Who is told of what: the recipients of each pathway and listing event, in one place.

Each function queues one event type in the caller's transaction (see outbound.enqueue) and returns it,
or None when no subscription wants it. Payloads carry ids only; the receiver fetches the rest under its
own scope, so a recipient learns nothing here that its own reads would not tell it.
"""

from __future__ import annotations

import uuid

from sqlmodel.ext.asyncio.session import AsyncSession

from directory import cases
from directory.pathway_models import CaseEvent, Handoff

from . import outbound
from .models import OutboxEvent


async def handoff_created(session: AsyncSession, handoff: Handoff) -> OutboxEvent | None:
    """The receiver learns of a handoff addressed to it."""
    return await outbound.enqueue(
        session,
        type="handoff.created",
        data={"handoff_id": handoff.id},
        organisation_ids=[handoff.receiver_organisation_id],
    )


async def handoff_moved(session: AsyncSession, handoff: Handoff, *, by: uuid.UUID | None) -> OutboxEvent | None:
    """Both sides learn of a move, except the side that made it (`by`; None for the system)."""
    return await outbound.enqueue(
        session,
        type="handoff.transitioned",
        data={"handoff_id": handoff.id, "status": handoff.status},
        organisation_ids=[o for o in (handoff.sender_organisation_id, handoff.receiver_organisation_id) if o != by],
    )


async def handoff_overdue(session: AsyncSession, handoff: Handoff) -> OutboxEvent | None:
    """Both sides learn that a handoff passed its acknowledgement deadline."""
    return await outbound.enqueue(
        session,
        type="handoff.overdue",
        data={"handoff_id": handoff.id},
        organisation_ids=[handoff.sender_organisation_id, handoff.receiver_organisation_id],
    )


async def case_event(session: AsyncSession, event: CaseEvent) -> OutboxEvent | None:
    """A runaway is signalled to every other organisation with a handoff under way on the case; other
    events are read on the pathway."""
    if event.kind != "runaway_started":
        return None
    partners = await cases.partners_to_warn(session, event.case_id, except_organisation=event.actor_organisation_id)
    return await outbound.enqueue(
        session,
        type="case.runaway_started",
        data={"case_id": event.case_id, "event_id": event.id},
        organisation_ids=partners,
    )


async def verification_due(session: AsyncSession, organisation_id: uuid.UUID, listings: int) -> OutboxEvent | None:
    """An organisation learns that some of its listings need re-verifying."""
    return await outbound.enqueue(
        session,
        type="listing.verification_due",
        data={"organisation_id": organisation_id, "listings": listings},
        organisation_ids=[organisation_id],
    )
