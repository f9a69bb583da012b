"""Care pathways: cases, handoffs between the 119 and partners, pathway events.

Specialists (acting for the 119 unit) see every case; a partner sees a case only through the handoffs
it sent or received, and then only what those handoffs need. Departments and admins read no case.
Every read and write here, refusals included, is journalled (GET /v1/audit).
"""

import json
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from directory import cases, handoffs, revisions
from directory.access import Principal, Role, Scoped
from directory.pathway_models import HandoffAssignee, HandoffStatus, Urgency
from directory.pathway_schemas import AssigneesIn, CaseCreate, CasePatch, HandoffCreate, PathwayEventIn, TransitionIn
from directory.revisions import Expected
from sync import notify

from ..audit import AuditedAllow, trail
from ..db import ReaderDep, SessionDep
from ..errors import problem_responses
from ..etags import documented, etag, if_match
from ..handoff_creation import create_handoff as _create_handoff
from ..idempotency import IDEMPOTENCY_KEY
from ..links import ETAG, ID, absolute, follow
from ..pagination import Pagination
from ..params import Cursor, Limit, merge_patch
from ..responses import JSONText, items_page
from ..schemas import AssigneeOut, CaseOut, CompetentCrip, HandoffOut, HandoffPage, PathwayItem
from ..scoping import InScope

router = APIRouter(prefix="/v1", tags=["care pathways"])

CaseId = Annotated[uuid.UUID, Path()]
HandoffId = Annotated[uuid.UUID, Path()]
# Scope before the body (api/scoping.py): declared after the policy, before the body is looked at.
CaseInScope = Annotated[None, Depends(InScope(Scoped.case, "case_id"))]
HandoffInScope = Annotated[None, Depends(InScope(Scoped.handoff, "handoff_id"))]
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


def _now() -> datetime:
    return datetime.now(UTC)


# --- cases -------------------------------------------------------------------------------------


def _case_links(case_id: str) -> dict[str, Any]:
    """What the 119 does with a case it reads: correct it, follow its pathway, alert, hand it over."""
    return {
        "GetCase": follow("get_case", "Read the case again.", case_id=case_id),
        "UpdateCase": follow("update_case", "Correct it, at this version.", case_id=case_id, if_match=ETAG),
        "Pathway": follow("case_pathway", "Its pathway: handoffs and events.", case_id=case_id),
        "CompetentCrips": follow("competent_crips", "The CRIPs to alert.", case_id=case_id),
        "AddEvent": follow("add_case_event", "Record a runaway, a return, a note…", case_id=case_id),
        "Close": follow("close_case", "Close it.", case_id=case_id),
        "HandOver": follow("create_handoff", "Hand it over to a partner.", body={"case_id": case_id}),
    }


def _handoff_links(handoff_id: str) -> dict[str, Any]:
    """What the sender or the receiver does next with a handoff: move it, staff it, see the pathway."""
    return {
        "GetHandoff": follow("get_handoff", "Read the handoff again.", handoff_id=handoff_id),
        "Transition": follow("transition_handoff", "Acknowledge, accept, decline…", handoff_id=handoff_id),
        "Assignees": follow("get_assignees", "Who works it.", handoff_id=handoff_id),
        "SetAssignees": follow("put_assignees", "Name who works it.", handoff_id=handoff_id),
        "Pathway": follow("case_pathway", "The case's pathway.", case_id="$response.body#/case_id"),
    }


@router.post(
    "/cases", status_code=201, response_model=CaseOut, responses={**documented(201, links=_case_links(ID)), **_WRITE}
)
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
        view, version = await cases.view(await revisions.driver(session), case.id, actor=principal, now=_now())
        await session.commit()
    return JSONText(
        view, status_code=201, headers={"ETag": etag(version), "Location": absolute(f"/v1/cases/{case.id}")}
    )


@router.get(
    "/cases/{case_id}",
    response_model=CaseOut,
    responses={**documented(links=_case_links("$request.path.case_id")), **_READ},
)
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
    responses={**documented(), **problem_responses(401, 403, 404, 412, 413, 422, 428)},
    openapi_extra=merge_patch(CasePatch),
)
async def update_case(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: CaseEditor,
    case_id: CaseId,
    in_scope: CaseInScope,
    versions: Annotated[Expected, Depends(if_match)],
    body: CasePatch,
) -> JSONText:
    """Correct a case (JSON Merge Patch). Needs If-Match."""
    async with trail(request, conn, principal, action="case.update", object_type="case", case_id=case_id) as entry:
        await cases.update(session, case_id, body, expected_version=versions, actor=principal)
        entry.in_transaction(session)
        view, version = await cases.view(await revisions.driver(session), case_id, actor=principal, now=_now())
        await session.commit()
    return JSONText(view, headers={"ETag": etag(version)})


@router.post("/cases/{case_id}/close", response_model=CaseOut, responses={**documented(), **_WRITE})
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
        view, version = await cases.view(await revisions.driver(session), case_id, actor=principal, now=_now())
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


@router.post(
    "/cases/{case_id}/events",
    status_code=201,
    response_model=PathwayItem,
    responses={
        # No Location: an event has no URL of its own; it is an item of the case's pathway.
        **documented(
            201,
            etag=False,
            location=False,
            links={"Pathway": follow("case_pathway", "The pathway, with this event.", case_id="$request.path.case_id")},
        ),
        **_WRITE,
    },
)
async def add_case_event(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: EventRecorder,
    case_id: CaseId,
    in_scope: CaseInScope,
    body: PathwayEventIn,
) -> JSONText:
    """Record a pathway event. A runaway is signalled to every partner with an active handoff."""
    async with trail(
        request, conn, principal, action="case.event.create", object_type="case_event", case_id=case_id
    ) as entry:
        event = await cases.add_event(session, case_id, body, actor=principal)
        await notify.case_event(session, event)
        entry.in_transaction(session, status=201)
        await session.commit()
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
    "/handoffs",
    status_code=201,
    response_model=HandoffOut,
    responses={**documented(201, links=_handoff_links(ID)), **problem_responses(400, 401, 403, 409, 413, 422)},
)
async def create_handoff(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    body: HandoffCreate,
    principal: HandoffCreator,
    idempotency_key: Annotated[str | None, Depends(IDEMPOTENCY_KEY)],
) -> JSONText:
    """Hand a case over: an information préoccupante (to the competent CRIP when no receiver is given),
    an orientation, a contact, a signalement, a shelter request. Needs an Idempotency-Key: a retry
    with the same key and body returns the first response; another body with that key is a 422."""
    return await _create_handoff(request, session, conn, principal, body, idempotency_key)


@router.get("/handoffs", response_model=HandoffPage, responses=_READ)
async def list_handoffs(
    request: Request,
    conn: ReaderDep,
    principal: HandoffLister,
    box: Annotated[Literal["inbox", "outbox"] | None, Query(description="What you received, or what you sent.")] = None,
    status: Annotated[list[HandoffStatus] | None, Query(max_length=11)] = None,
    urgency: Urgency | None = None,
    overdue: Annotated[bool | None, Query(description="Sent and past their acknowledgement deadline.")] = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """Your handoffs, newest first: a partner's inbox and outbox; specialists see them all."""
    page = Pagination(request, "handoffs", 2, limit=limit, cursor=cursor)
    async with trail(request, conn, principal, action="handoff.list", object_type="handoff"):
        rows = await handoffs.list_(
            conn,
            actor=principal,
            now=_now(),
            box=box,
            statuses=[s.value for s in status] if status else None,
            urgency=urgency,
            overdue=overdue,
            after=page.after,
            limit=page.fetch,
        )
    rows, links = page.finish(rows, key=lambda row: [row[0], row[1]])
    return items_page((row[2] for row in rows), links)


@router.get(
    "/handoffs/{handoff_id}",
    response_model=HandoffOut,
    responses={**documented(links=_handoff_links("$request.path.handoff_id")), **_READ},
)
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
    responses={
        **documented(links=_handoff_links("$request.path.handoff_id")),
        **problem_responses(401, 403, 404, 409, 413, 422),
    },
)
async def transition_handoff(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: HandoffMover,
    handoff_id: HandoffId,
    in_scope: HandoffInScope,
    body: TransitionIn,
) -> JSONText:
    """Move a handoff: the receiver acknowledges, accepts, declines, starts, pauses, completes or fails
    it; the sender cancels it or marks it entered in error. Declining and failing need a reason code.
    An illegal move is a 409 listing the allowed ones; give `from` (the status you saw) so that a move
    made meanwhile by someone else refuses yours instead of being overridden."""
    async with trail(request, conn, principal, action="handoff.transition", object_type="handoff") as entry:
        handoff = await handoffs.transition(session, handoff_id, body, actor=principal)
        entry.case_id = handoff.case_id
        await notify.handoff_moved(session, handoff, by=principal.organisation_id)
        view, version = await handoffs.get(await revisions.driver(session), handoff.id, actor=principal, now=_now())
        entry.in_transaction(session)
        await session.commit()
    return JSONText(view, headers={"ETag": etag(version)})


# --- who works a handoff (need-to-know) ------------------------------------------------------------

AssigneeReader = Annotated[Principal, Depends(AuditedAllow("handoff.assignees.read", "handoff", S))]
AssigneeEditor = Annotated[Principal, Depends(AuditedAllow("handoff.assignees.update", "handoff", S))]


def _assignees_json(rows: list[HandoffAssignee]) -> str:
    return json.dumps(
        [
            {"issuer": a.issuer, "subject": a.subject, "added_at": a.added_at.isoformat(), "added_by": a.added_by}
            for a in rows
        ]
    )


@router.get("/handoffs/{handoff_id}/assignees", response_model=list[AssigneeOut], responses=_READ)
async def get_assignees(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    handoff_id: HandoffId,
    principal: AssigneeReader,
) -> JSONText:
    """The specialists the sender added to a handoff: with the sender, they work the child's case and
    see the receiving safe house's exact place while the handoff is under way."""
    async with trail(request, conn, principal, action="handoff.assignees.read", object_type="handoff") as entry:
        rows = await handoffs.assignees(session, handoff_id, actor=principal)
        entry.object_id = handoff_id
    return JSONText(_assignees_json(rows))


@router.put(
    "/handoffs/{handoff_id}/assignees",
    response_model=list[AssigneeOut],
    responses=problem_responses(401, 403, 404, 409, 413, 422),
)
async def put_assignees(
    request: Request,
    session: SessionDep,
    conn: ReaderDep,
    principal: AssigneeEditor,
    handoff_id: HandoffId,
    in_scope: HandoffInScope,
    body: AssigneesIn,
) -> JSONText:
    """Replace the list of specialists working the case through this handoff. Only its sender and its
    current assignees may, while it is under way. `issuer` defaults to yours."""
    people = [(a.issuer or principal.issuer, a.subject) for a in body.assignees]
    async with trail(request, conn, principal, action="handoff.assignees.update", object_type="handoff") as entry:
        rows = await handoffs.set_assignees(session, handoff_id, people, actor=principal)
        entry.in_transaction(session)
        await session.commit()
    return JSONText(_assignees_json(rows))
