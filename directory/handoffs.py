"""Handoffs: the state machine, who may move it, and the one function that does.

The machine is data (TRANSITIONS) and each move is made by `transition`, which locks the row, checks
the move against the table and the actor's side, updates the handoff and appends an immutable
handoff_event — all in the caller's transaction. Concurrent moves on one handoff are serialised by
the row lock; a caller that states the status it saw (`from`) is refused if it is no longer current.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from psycopg import AsyncConnection
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from .access import (
    ACTIVE_HANDOFF_STATUSES,
    HANDOFF_VISIBLE,
    Principal,
    Role,
    Scoped,
    can_read_case,
    in_scope,
    lock_visible_handoff,
    sql_params,
)
from .errors import Conflict, InvalidInput, InvalidTransition, NotFound, NotWorking
from .models import Organisation, OrganisationKind, Service
from .pathway_models import (
    Case,
    CaseStatus,
    Handoff,
    HandoffAssignee,
    HandoffEvent,
    HandoffKind,
    HandoffStatus,
    Urgency,
)
from .pathway_schemas import HandoffCreate, TransitionIn
from .revisions import driver

S = HandoffStatus
TRANSITIONS: dict[HandoffStatus, frozenset[HandoffStatus]] = {
    S.sent: frozenset({S.acknowledged, S.accepted, S.declined, S.cancelled, S.expired}),
    S.acknowledged: frozenset({S.accepted, S.declined, S.cancelled, S.expired}),
    S.accepted: frozenset({S.in_progress, S.on_hold, S.failed, S.cancelled}),
    S.in_progress: frozenset({S.on_hold, S.completed, S.failed}),
    S.on_hold: frozenset({S.in_progress, S.failed, S.cancelled}),
    S.declined: frozenset(),
    S.completed: frozenset(),
    S.failed: frozenset(),
    S.cancelled: frozenset(),
    S.expired: frozenset(),
    S.entered_in_error: frozenset(),
}
# Who makes which move. The sender may also mark any handoff entered in error (a correction: such
# handoffs leave the statistics), from every status but that one.
RECEIVER_MOVES = frozenset({S.acknowledged, S.accepted, S.declined, S.in_progress, S.on_hold, S.completed, S.failed})
SENDER_MOVES = frozenset({S.cancelled, S.entered_in_error})
SYSTEM_MOVES = frozenset({S.expired})
TERMINAL = frozenset(status for status, moves in TRANSITIONS.items() if not moves)
ACTIVE = frozenset(HandoffStatus) - TERMINAL
assert {status.value for status in ACTIVE} == set(ACTIVE_HANDOFF_STATUSES), "access.py and the machine disagree"
REASON_CODES: dict[HandoffStatus, frozenset[str]] = {
    S.declined: frozenset({"no_capacity", "out_of_criteria", "out_of_territory", "refused_by_young_person", "other"}),
    S.failed: frozenset({"unreachable", "runaway", "refused", "other"}),
}
DEFAULT_ACKNOWLEDGE_WITHIN = {
    Urgency.immediate: timedelta(hours=1),
    Urgency.within_24h: timedelta(hours=24),
    Urgency.routine: timedelta(days=7),
}


def allowed_moves(status: HandoffStatus, side: set[str]) -> list[HandoffStatus]:
    """The moves from `status` open to an actor on these sides ("sender", "receiver", "system")."""
    moves = set(TRANSITIONS[status])
    if status is not S.entered_in_error:
        moves.add(S.entered_in_error)
    permitted: set[HandoffStatus] = set()
    if "receiver" in side:
        permitted |= RECEIVER_MOVES
    if "sender" in side:
        permitted |= SENDER_MOVES
    if "system" in side:
        permitted |= SYSTEM_MOVES
    return sorted(moves & permitted, key=list(HandoffStatus).index)


def sides(handoff: Handoff, actor: Principal) -> set[str]:
    """An actor's sides of a handoff: the organisation it acts for sent or received it."""
    result = set()
    if actor.organisation_id == handoff.sender_organisation_id:
        result.add("sender")
    if actor.organisation_id == handoff.receiver_organisation_id:
        result.add("receiver")
    return result


async def load(session: AsyncSession, handoff_id: uuid.UUID, actor: Principal) -> Handoff:
    """A handoff the actor may read, locked for an update; else NotFound."""
    handoff = await session.get(Handoff, handoff_id) if await lock_visible_handoff(session, handoff_id, actor) else None
    if handoff is None:
        raise NotFound("no such handoff")
    return handoff


# --- creation -------------------------------------------------------------------------------------


async def create(
    session: AsyncSession,
    data: HandoffCreate,
    *,
    actor: Principal,
    acknowledge_within: dict[Urgency, timedelta],
    now: datetime | None = None,
) -> Handoff:
    now = now or datetime.now(UTC)
    sender = actor.organisation_id
    case = await session.get(Case, data.case_id) if await can_read_case(session, data.case_id, actor) else None
    if case is None or sender is None:
        raise InvalidInput("case_id", "no such case")
    if case.status is CaseStatus.closed:
        raise InvalidInput("case_id", "the case is closed: reopen it or open a new one")
    receiver_id = data.to_organisation_id
    if receiver_id is None:
        if data.kind is not HandoffKind.information_preoccupante:
            raise InvalidInput(
                "to_organisation_id",
                "say who receives it (only an information préoccupante is routed to the competent CRIP by itself)",
            )
        receiver_id = (
            await session.exec(
                select(Organisation.id).where(
                    Organisation.kind == OrganisationKind.crip, Organisation.collectivite_code == case.collectivite_code
                )
            )
        ).first()
        if receiver_id is None:
            raise InvalidInput("to_organisation_id", f"no CRIP for collectivité {case.collectivite_code}")
    receiver = await session.get(Organisation, receiver_id)
    if receiver is None or receiver.deactivated_at is not None:
        raise InvalidInput("to_organisation_id", "no such organisation")
    if receiver.id == sender:
        raise InvalidInput("to_organisation_id", "a handoff goes to another organisation")
    if data.to_service_id is not None:
        service = await session.get(Service, data.to_service_id)
        if service is None or service.organisation_id != receiver.id or service.archived_at is not None:
            raise InvalidInput("to_service_id", "no such service at the receiving organisation")
    handoff = Handoff(
        case_id=case.id,
        collectivite_code=case.collectivite_code,
        sender_organisation_id=sender,
        receiver_organisation_id=receiver.id,
        receiver_service_id=data.to_service_id,
        kind=data.kind,
        beneficiary=data.beneficiary,
        urgency=data.urgency,
        legal_basis=data.legal_basis,
        reason=data.reason,
        acknowledge_by=now + acknowledge_within[data.urgency],
        created_by=actor.subject,
        created_by_issuer=actor.issuer,
        created_at=now,
    )
    session.add(handoff)
    await session.flush()
    session.add(_event(handoff, None, S.sent, actor=actor, organisation=sender, at=now))
    await session.flush()
    return handoff


def _event(
    handoff: Handoff,
    from_status: HandoffStatus | None,
    to_status: HandoffStatus,
    *,
    actor: Principal | None,
    organisation: uuid.UUID | None,
    at: datetime,
    reason_code: str | None = None,
    reason: str | None = None,
) -> HandoffEvent:
    return HandoffEvent(
        handoff_id=handoff.id,
        case_id=handoff.case_id,
        collectivite_code=handoff.collectivite_code,
        at=at,
        from_status=from_status,
        to_status=to_status,
        reason_code=reason_code,
        reason=reason,
        actor_subject=actor.subject if actor else "system",
        actor_role=actor.role if actor else None,
        actor_organisation_id=organisation,
    )


# --- moves --------------------------------------------------------------------------------------


async def transition(
    session: AsyncSession,
    handoff_id: uuid.UUID,
    move: TransitionIn,
    *,
    actor: Principal,
    now: datetime | None = None,
) -> Handoff:
    now = now or datetime.now(UTC)
    handoff = await load(session, handoff_id, actor)
    actor_sides = sides(handoff, actor)
    # A partner whose part in the case is over (no handoff of its own under way) reads its records
    # but moves nothing: not even an "entered in error", which would still write on the pathway and
    # change the statistics.
    over = actor.role is Role.partner and not await can_read_case(session, handoff.case_id, actor)
    allowed = [] if over else allowed_moves(handoff.status, actor_sides)
    if move.expected is not None and move.expected != handoff.status:
        raise InvalidTransition(
            f"the handoff is now {handoff.status}, not {move.expected}",
            current=handoff.status,
            allowed=[str(a) for a in allowed],
        )
    if move.to not in allowed:
        raise InvalidTransition(
            f"cannot move a {handoff.status} handoff to {move.to}",
            current=handoff.status,
            allowed=[str(a) for a in allowed],
        )
    _check_reason(move)
    return await _apply(
        session,
        handoff,
        move.to,
        actor=actor,
        organisation=actor.organisation_id,
        at=now,
        reason_code=move.reason_code,
        reason=move.reason,
    )


def _check_reason(move: TransitionIn) -> None:
    codes = REASON_CODES.get(move.to)
    if codes is None:
        if move.reason_code is not None:
            raise InvalidInput("reason_code", f"a move to {move.to} takes no reason code")
        return
    if move.reason_code not in codes:
        raise InvalidInput("reason_code", f"a move to {move.to} needs one of: {', '.join(sorted(codes))}")
    if move.reason_code == "other" and not move.reason:
        raise InvalidInput("reason", "say why in a few words when the reason is 'other'")


async def _apply(
    session: AsyncSession,
    handoff: Handoff,
    to: HandoffStatus,
    *,
    actor: Principal | None,
    organisation: uuid.UUID | None,
    at: datetime,
    reason_code: str | None = None,
    reason: str | None = None,
) -> Handoff:
    from_status = handoff.status
    handoff.status = to
    handoff.version += 1
    if to is S.acknowledged:
        handoff.acknowledged_at = at
    if to is S.accepted:
        handoff.accepted_at = at
        handoff.acknowledged_at = handoff.acknowledged_at or at
    if to is S.declined:
        handoff.decline_reason = reason_code
    if to in TERMINAL:
        handoff.closed_at = at
    session.add(handoff)
    session.add(
        _event(
            handoff,
            from_status,
            to,
            actor=actor,
            organisation=organisation,
            at=at,
            reason_code=reason_code,
            reason=reason,
        )
    )
    await session.flush()
    return handoff


async def expire_overdue(
    session: AsyncSession, *, now: datetime, grace: timedelta
) -> tuple[list[Handoff], list[Handoff]]:
    """Flag handoffs past their acknowledgement deadline (once), and expire those still unanswered a
    grace period later. Idempotent: running it twice changes nothing more."""
    overdue = list(
        (
            await session.exec(
                select(Handoff)
                .where(
                    Handoff.status == S.sent,
                    Handoff.acknowledge_by < now,
                    Handoff.overdue_at.is_(None),  # type: ignore[union-attr]
                )
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    for handoff in overdue:
        handoff.overdue_at = now
        session.add(handoff)
    expiring = list(
        (
            await session.exec(
                select(Handoff)
                .where(
                    Handoff.status.in_([S.sent, S.acknowledged]),  # type: ignore[attr-defined]
                    Handoff.acknowledge_by < now - grace,
                )
                .with_for_update(skip_locked=True)
            )
        ).all()
    )
    for handoff in expiring:
        await _apply(session, handoff, S.expired, actor=None, organisation=None, at=now)
    await session.flush()
    return overdue, expiring


# --- reading ------------------------------------------------------------------------------------

HANDOFF_JSON = """
    json_build_object(
        'id', h.id, 'case_id', h.case_id, 'kind', h.kind, 'status', h.status,
        'sender', json_build_object('id', so.id, 'name', so.name, 'kind', so.kind),
        'receiver', json_build_object('id', ro.id, 'name', ro.name, 'kind', ro.kind),
        'service', (SELECT json_build_object('id', sv.id, 'name', sv.name) FROM service sv
                     WHERE sv.id = h.receiver_service_id),
        'beneficiary', h.beneficiary, 'urgency', h.urgency, 'legal_basis', h.legal_basis, 'reason', h.reason,
        'acknowledge_by', h.acknowledge_by,
        'overdue', h.status = 'sent' AND h.acknowledge_by < %(now)s,
        'acknowledged_at', h.acknowledged_at, 'accepted_at', h.accepted_at, 'closed_at', h.closed_at,
        'decline_reason', h.decline_reason, 'created_at', h.created_at, 'version', h.version)
"""
HANDOFF_FROM = """
    FROM handoff h JOIN organisation so ON so.id = h.sender_organisation_id
    JOIN organisation ro ON ro.id = h.receiver_organisation_id
"""


async def get(conn: AsyncConnection, handoff_id: uuid.UUID, *, actor: Principal, now: datetime) -> tuple[str, int]:
    row = await (
        await conn.execute(
            f"SELECT {HANDOFF_JSON}::text, h.version {HANDOFF_FROM} WHERE h.id = %(id)s AND {HANDOFF_VISIBLE}",
            {"id": handoff_id, "now": now, **sql_params(actor)},
        )
    ).fetchone()
    if row is None:
        raise NotFound("no such handoff")
    return str(row[0]), int(row[1])


async def list_(
    conn: AsyncConnection,
    *,
    actor: Principal,
    now: datetime,
    box: str | None,
    statuses: list[str] | None,
    urgency: str | None,
    overdue: bool | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[tuple[str, str, str]]:
    """(created_at, id, JSON) of the handoffs a viewer may read, newest first. A partner's inbox holds
    what it received, its outbox what it sent."""
    params: dict[str, Any] = {
        "now": now,
        **sql_params(actor),
        "box": box,
        "box_org": actor.organisation_id,
        "statuses": statuses,
        "urgency": urgency,
        "overdue": overdue,
        "after_at": after[0] if after else None,
        "after_id": after[1] if after else None,
        "limit": limit,
    }
    rows = await (
        await conn.execute(
            f"""SELECT h.created_at::text, h.id::text, {HANDOFF_JSON}::text {HANDOFF_FROM}
             WHERE {HANDOFF_VISIBLE}
               AND (%(box)s::text IS NULL
                    OR (%(box)s = 'inbox' AND h.receiver_organisation_id = %(box_org)s::uuid)
                    OR (%(box)s = 'outbox' AND h.sender_organisation_id = %(box_org)s::uuid))
               AND (%(statuses)s::text[] IS NULL OR h.status = ANY(%(statuses)s::text[]))
               AND (%(urgency)s::text IS NULL OR h.urgency = %(urgency)s::text)
               AND (%(overdue)s::boolean IS NULL
                    OR %(overdue)s = (h.status = 'sent' AND h.acknowledge_by < %(now)s))
               AND (%(after_at)s::timestamptz IS NULL
                    OR (h.created_at, h.id) < (%(after_at)s::timestamptz, %(after_id)s::uuid))
             ORDER BY h.created_at DESC, h.id DESC LIMIT %(limit)s""",
            params,
        )
    ).fetchall()
    return [(row[0], row[1], row[2]) for row in rows]


# --- the specialists working a handoff (need-to-know) ----------------------------------------------


async def _working(session: AsyncSession, handoff: Handoff, actor: Principal) -> bool:
    """The actor sent the handoff (for the 119) or is one of its assignees."""
    if actor.role is not Role.specialist or handoff.sender_organisation_id != actor.organisation_id:
        return False
    if (handoff.created_by_issuer, handoff.created_by) == (actor.issuer, actor.subject):
        return True
    assignee = await session.get(HandoffAssignee, (handoff.id, actor.issuer, actor.subject))
    return assignee is not None and assignee.removed_at is None


async def assignees(session: AsyncSession, handoff_id: uuid.UUID, *, actor: Principal) -> list[HandoffAssignee]:
    """The current assignees of a handoff the 119 sent, oldest first (a read: nothing is locked)."""
    if not await in_scope(await driver(session), Scoped.handoff, handoff_id, actor):
        raise NotFound("no such handoff")
    rows = await session.exec(
        select(HandoffAssignee)
        .where(HandoffAssignee.handoff_id == handoff_id, HandoffAssignee.removed_at.is_(None))  # type: ignore[union-attr]
        .order_by(HandoffAssignee.added_at, HandoffAssignee.issuer, HandoffAssignee.subject)  # type: ignore[arg-type]
    )
    return list(rows.all())


async def set_assignees(
    session: AsyncSession,
    handoff_id: uuid.UUID,
    people: list[tuple[str, str]],
    *,
    actor: Principal,
    now: datetime | None = None,
) -> list[HandoffAssignee]:
    """Replace the assignees (issuer, subject) of a handoff. Only the people working it — its sender
    and its assignees — may, while it is under way: they are the ones who may see where the child is
    being placed."""
    now = now or datetime.now(UTC)
    handoff = await load(session, handoff_id, actor)
    if not await _working(session, handoff, actor):
        raise NotWorking("only the specialist who sent this handoff and its assignees may change who works it")
    if handoff.status in TERMINAL:
        raise Conflict(f"the handoff is {handoff.status}: nobody works it any more")
    wanted = set(people)
    current = {
        (row.issuer, row.subject): row
        for row in (await session.exec(select(HandoffAssignee).where(HandoffAssignee.handoff_id == handoff.id))).all()
    }
    for person, row in current.items():
        if person not in wanted and row.removed_at is None:
            row.removed_at = now
            session.add(row)
    for issuer, subject in wanted:
        existing = current.get((issuer, subject))
        if existing is None:
            session.add(
                HandoffAssignee(
                    collectivite_code=handoff.collectivite_code,
                    handoff_id=handoff.id,
                    issuer=issuer,
                    subject=subject,
                    added_at=now,
                    added_by_issuer=actor.issuer,
                    added_by=actor.subject,
                )
            )
        elif existing.removed_at is not None:
            existing.removed_at, existing.added_at = None, now
            existing.added_by_issuer, existing.added_by = actor.issuer, actor.subject
            session.add(existing)
    await session.flush()
    return await assignees(session, handoff.id, actor=actor)
