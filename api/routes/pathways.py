"""Care pathways: cases, handoffs between the 119 and partners, pathway events.

Specialists (acting for the 119 unit) see every case; a partner sees a case only through the handoffs
it sent or received, and then only what those handoffs need. Departments and admins read no case.
Every read and write here, refusals included, is journalled (GET /v1/audit).
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query, Request
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory import cases, handoffs
from directory.access import Principal, Role
from directory.pathway_models import HandoffStatus, PathwayEventKind, Urgency
from directory.pathway_schemas import CaseCreate, CasePatch, HandoffCreate, PathwayEventIn, TransitionIn
from directory.seeding import HOTLINE_SEED_KEY
from sync import outbound

from .. import idempotency
from ..audit import AuditedAllow, trail
from ..db import ReaderDep, SessionDep
from ..errors import InvalidParameter, problem_responses
from ..etags import etag, if_match
from ..pagination import next_link
from ..params import Cursor, Limit
from ..responses import JSONText
from ..schemas import CaseOut, CompetentCrip, HandoffOut, HandoffPage, PathwayItem

router = APIRouter(prefix="/v1", tags=["care pathways"])

CaseId = Annotated[uuid.UUID, Path()]
HandoffId = Annotated[uuid.UUID, Path()]
_READ = problem_responses(401, 403, 404, 422)
_WRITE = problem_responses(401, 403, 404, 413, 422)


# Each operation journals its refusals under its own action name (see api/audit.py).
S, P = Role.specialist, Role.partner
CaseCreator = Annotated[Principal, Depends(AuditedAllow("case.create", "case", S))]
CaseReader = Annotated[Principal, Depends(AuditedAllow("case.read", "case", S, P))]
CaseEditor = Annotated[Principal, Depends(AuditedAllow("case.update", "case", S))]
CaseCloser = Annotated[Principal, Depends(AuditedAllow("case.close", "case", S))]
CompetenceReader = Annotated[Principal, Depends(AuditedAllow("case.competence.read", "case", S, P))]
PathwayReader = Annotated[Principal, Depends(AuditedAllow("case.pathway.read", "case", S, P))]
EventRecorder = Annotated[Principal, Depends(AuditedAllow("case.event.create", "case", S, P))]
HandoffCreator = Annotated[Principal, Depends(AuditedAllow("handoff.create", "handoff", S, P))]
HandoffLister = Annotated[Principal, Depends(AuditedAllow("handoff.list", "handoff", S, P))]
HandoffReader = Annotated[Principal, Depends(AuditedAllow("handoff.read", "handoff", S, P))]
HandoffMover = Annotated[Principal, Depends(AuditedAllow("handoff.transition", "handoff", S, P))]


async def hotline_id(request: Request, conn: ReaderDep) -> uuid.UUID:
    """The 119 unit's organisation: the sender of the handoffs specialists make."""
    cached = getattr(request.app.state, "hotline_id", None)
    if cached is None:
        row = await (
            await conn.execute("SELECT id FROM organisation WHERE seed_key = %s", (HOTLINE_SEED_KEY,))
        ).fetchone()
        if row is None:
            raise RuntimeError("the 119 unit's organisation is missing: run `maillage seed`")
        cached = request.app.state.hotline_id = row[0]
    return uuid.UUID(str(cached))


Hotline = Annotated[uuid.UUID, Depends(hotline_id)]


async def _driver(session: AsyncSession) -> AsyncConnection:
    """The psycopg connection under the session: SQL-built reads inside the write's transaction."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


def _now() -> datetime:
    return datetime.now(UTC)


# --- cases -------------------------------------------------------------------------------------


@router.post("/cases", status_code=201, response_model=CaseOut, responses=_WRITE)
async def create_case(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    body: CaseCreate,
    principal: CaseCreator,
) -> JSONText:
    """Open a pseudonymous case: a random reference, an age, territories, needs, safety flags — no name,
    birth date, address or phone, anywhere."""
    async with trail(request, conn, principal, action="case.create", object_type="case") as entry:
        case = await cases.create(session, body, actor=principal)
        entry.object_id = entry.case_id = case.id
        entry.in_transaction(session, status=201)
        view, version = await cases.view(await _driver(session), case.id, actor=principal, now=_now())
        await session.commit()
    return JSONText(view, status_code=201, headers={"ETag": etag(version), "Location": f"/v1/cases/{case.id}"})


@router.get("/cases/{case_id}", response_model=CaseOut, responses=_READ)
async def get_case(
    request: Request,
    conn: ReaderDep,
    case_id: CaseId,
    principal: CaseReader,
) -> JSONText:
    """A case, as you may see it: in full for specialists; for a partner, what its handoffs need."""
    async with trail(request, conn, principal, action="case.read", object_type="case", case_id=case_id):
        view, version = await cases.view(conn, case_id, actor=principal, now=_now())
    return JSONText(view, headers={"ETag": etag(version)})


@router.patch(
    "/cases/{case_id}",
    response_model=CaseOut,
    responses=problem_responses(401, 403, 404, 412, 413, 422, 428),
    openapi_extra={"requestBody": {"content": {"application/merge-patch+json": {}}}},
)
async def update_case(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    case_id: CaseId,
    body: CasePatch,
    versions: Annotated[set[int] | None, Depends(if_match)],
    principal: CaseEditor,
) -> JSONText:
    """Correct a case (JSON Merge Patch). Needs If-Match."""
    async with trail(request, conn, principal, action="case.update", object_type="case", case_id=case_id) as entry:
        await cases.update(session, case_id, body, expected_version=versions, actor=principal)
        entry.in_transaction(session)
        view, version = await cases.view(await _driver(session), case_id, actor=principal, now=_now())
        await session.commit()
    return JSONText(view, headers={"ETag": etag(version)})


@router.post("/cases/{case_id}/close", response_model=CaseOut, responses=_WRITE)
async def close_case(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    case_id: CaseId,
    principal: CaseCloser,
) -> JSONText:
    """Close a case. Its retention period (default 3 years) starts now."""
    async with trail(request, conn, principal, action="case.close", object_type="case", case_id=case_id) as entry:
        await cases.close(session, case_id, actor=principal)
        entry.in_transaction(session)
        view, version = await cases.view(await _driver(session), case_id, actor=principal, now=_now())
        await session.commit()
    return JSONText(view, headers={"ETag": etag(version)})


@router.get("/cases/{case_id}/competent-crips", response_model=list[CompetentCrip], responses=_READ)
async def competent_crips(
    request: Request,
    conn: ReaderDep,
    case_id: CaseId,
    principal: CompetenceReader,
) -> JSONText:
    """The CRIP(s) to alert: the child's residence, and where the child was found when different."""
    async with trail(request, conn, principal, action="case.competence.read", object_type="case", case_id=case_id):
        body = await cases.competent_crips(conn, case_id, actor=principal)
    return JSONText(body)


@router.get("/cases/{case_id}/pathway", response_model=list[PathwayItem], responses=_READ)
async def case_pathway(
    request: Request,
    conn: ReaderDep,
    case_id: CaseId,
    principal: PathwayReader,
) -> JSONText:
    """The child's pathway, oldest first: handoffs made and moved, runaways, returns, relapses…"""
    async with trail(request, conn, principal, action="case.pathway.read", object_type="case", case_id=case_id):
        body = await cases.pathway(conn, case_id, actor=principal)
    return JSONText(body)


@router.post("/cases/{case_id}/events", status_code=201, response_model=PathwayItem, responses=_WRITE)
async def add_case_event(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    hotline: Hotline,
    case_id: CaseId,
    body: PathwayEventIn,
    principal: EventRecorder,
) -> JSONText:
    """Record a pathway event. A runaway is signalled to every partner with an active handoff."""
    async with trail(
        request, conn, principal, action="case.event.create", object_type="case_event", case_id=case_id
    ) as entry:
        event = await cases.add_event(session, case_id, body, actor=principal, hotline_id=hotline)
        queued = None
        if event.kind is PathwayEventKind.runaway_started:
            partners = await cases.partners_to_warn(session, case_id, except_organisation=event.actor_organisation_id)
            queued = await outbound.enqueue(
                session,
                type="case.runaway_started",
                data={"case_id": case_id, "event_id": event.id},
                organisation_ids=partners,
            )
        entry.in_transaction(session, status=201)
        await session.commit()
    if queued is not None:
        request.app.state.outbox_signal.set()
    return JSONText(
        json.dumps(
            {
                "type": "event",
                "id": event.id,
                "at": event.occurred_at.isoformat(),
                "kind": event.kind,
                "note": event.note,
                "recorded_at": event.recorded_at.isoformat(),
                "by": {
                    "role": event.actor_role,
                    "organisation_id": str(event.actor_organisation_id) if event.actor_organisation_id else None,
                },
            }
        ),
        status_code=201,
    )


# --- handoffs ----------------------------------------------------------------------------------


@router.post(
    "/handoffs", status_code=201, response_model=HandoffOut, responses=problem_responses(400, 401, 403, 409, 413, 422)
)
async def create_handoff(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    hotline: Hotline,
    body: HandoffCreate,
    principal: HandoffCreator,
) -> JSONText:
    """Hand a case over: an information préoccupante (to the competent CRIP when no receiver is given),
    an orientation, a contact, a signalement, a shelter request. Needs an Idempotency-Key: a retry
    with the same key and body returns the first response; another body with that key is a 422."""
    key = idempotency.key_of(request)
    async with trail(
        request, conn, principal, action="handoff.create", object_type="handoff", case_id=body.case_id
    ) as entry:
        stored = await idempotency.claim(
            session,
            subject=principal.subject,
            key=key,
            fingerprint=idempotency.fingerprint(request, body.model_dump(mode="json")),
        )
        if stored is not None:
            await session.rollback()
            return JSONText(stored.body, status_code=stored.status, headers=stored.headers)
        within = {Urgency(k): v for k, v in request.app.state.settings.acknowledge_within().items()}
        handoff = await handoffs.create(session, body, actor=principal, hotline_id=hotline, acknowledge_within=within)
        entry.object_id = handoff.id
        await outbound.enqueue(
            session,
            type="handoff.created",
            data={"handoff_id": handoff.id},
            organisation_ids=[handoff.receiver_organisation_id],
        )
        view, version = await handoffs.get(await _driver(session), handoff.id, actor=principal, now=_now())
        headers = {"ETag": etag(version), "Location": f"/v1/handoffs/{handoff.id}"}
        await idempotency.store(session, subject=principal.subject, key=key, status=201, body=view, headers=headers)
        entry.in_transaction(session, status=201)
        await session.commit()
    request.app.state.outbox_signal.set()
    return JSONText(view, status_code=201, headers=headers)


@router.get("/handoffs", response_model=HandoffPage, responses=_READ)
async def list_handoffs(
    request: Request,
    conn: ReaderDep,
    hotline: Hotline,
    principal: HandoffLister,
    box: Annotated[Literal["inbox", "outbox"] | None, Query(description="What you received, or what you sent.")] = None,
    status: Annotated[list[HandoffStatus] | None, Query(max_length=11)] = None,
    urgency: Urgency | None = None,
    overdue: Annotated[bool | None, Query(description="Sent and past their acknowledgement deadline.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """Your handoffs, newest first: a partner's inbox and outbox; specialists see them all."""
    after = request.app.state.cursors.decode("handoffs", cursor)
    if after is not None and (not isinstance(after, list) or len(after) != 2):
        raise InvalidParameter("cursor", "malformed cursor")
    async with trail(request, conn, principal, action="handoff.list", object_type="handoff"):
        rows = await handoffs.list_(
            conn,
            actor=principal,
            now=_now(),
            box=box,
            box_org=hotline if principal.role is Role.specialist else principal.organisation_id,
            statuses=[s.value for s in status] if status else None,
            urgency=urgency,
            overdue=overdue,
            after=(after[0], after[1]) if after else None,
            limit=limit + 1,
        )
    links = []
    if len(rows) > limit:
        rows = rows[:limit]
        links.append(
            {
                "rel": "next",
                "href": next_link(request, request.app.state.cursors.encode("handoffs", [rows[-1][0], rows[-1][1]])),
            }
        )
    return JSONText('{"items":[' + ",".join(row[2] for row in rows) + '],"links":' + json.dumps(links) + "}")


@router.get("/handoffs/{handoff_id}", response_model=HandoffOut, responses=_READ)
async def get_handoff(
    request: Request,
    conn: ReaderDep,
    handoff_id: HandoffId,
    principal: HandoffReader,
) -> JSONText:
    """A handoff you sent or received (specialists: any)."""
    async with trail(request, conn, principal, action="handoff.read", object_type="handoff"):
        view, version = await handoffs.get(conn, handoff_id, actor=principal, now=_now())
    return JSONText(view, headers={"ETag": etag(version)})


@router.post(
    "/handoffs/{handoff_id}/transitions",
    response_model=HandoffOut,
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)
async def transition_handoff(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    hotline: Hotline,
    handoff_id: HandoffId,
    body: TransitionIn,
    principal: HandoffMover,
) -> JSONText:
    """Move a handoff: the receiver acknowledges, accepts, declines, starts, pauses, completes or fails
    it; the sender cancels it or marks it entered in error. Declining and failing need a reason code.
    An illegal move is a 409 listing the allowed ones; give `from` (the status you saw) so that a move
    made meanwhile by someone else refuses yours instead of being overridden."""
    async with trail(request, conn, principal, action="handoff.transition", object_type="handoff") as entry:
        handoff = await handoffs.transition(session, handoff_id, body, actor=principal, hotline_id=hotline)
        entry.case_id = handoff.case_id
        actor_org = hotline if principal.role is Role.specialist else principal.organisation_id
        await outbound.enqueue(
            session,
            type="handoff.transitioned",
            data={"handoff_id": handoff.id, "status": handoff.status},
            organisation_ids=[
                o for o in (handoff.sender_organisation_id, handoff.receiver_organisation_id) if o != actor_org
            ],
        )
        view, version = await handoffs.get(await _driver(session), handoff.id, actor=principal, now=_now())
        entry.in_transaction(session)
        await session.commit()
    request.app.state.outbox_signal.set()
    return JSONText(view, headers={"ETag": etag(version)})
