"""The journal of case data access (CNIL), read by admins. Written by api/audit.py."""

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request

from directory.access import Principal, Role
from directory.schemas import Timestamp

from ..auth import Allow
from ..db import ReaderDep
from ..errors import problem_responses
from ..pagination import Pagination
from ..params import Cursor, Limit
from ..responses import JSONText, items_page
from ..schemas import AuditPage

router = APIRouter(prefix="/v1", tags=["audit"])


@router.get("/audit", response_model=AuditPage, responses=problem_responses(401, 403, 422))
async def list_audit(
    request: Request,
    conn: ReaderDep,
    _: Annotated[Principal, Depends(Allow(Role.admin))],
    actor: Annotated[str | None, Query(max_length=200)] = None,
    action: Annotated[str | None, Query(max_length=64, pattern=r"^[a-z_.]+$")] = None,
    case_id: uuid.UUID | None = None,
    object_id: uuid.UUID | None = None,
    outcome: Annotated[str | None, Query(pattern=r"^(allowed|denied|not_found|conflict|invalid|error)$")] = None,
    since: Timestamp | None = None,
    until: Timestamp | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """The journal of case data access (admins), newest first, with filters."""
    page = Pagination(request, "audit", int, limit=limit, cursor=cursor)
    rows = await (
        await conn.execute(
            """SELECT id, json_build_object('id', id, 'at', at, 'actor', json_build_object(
                      'issuer', actor_issuer, 'subject', actor_subject, 'role', actor_role,
                      'organisation_id', actor_organisation_id),
                   'action', action, 'object_type', object_type, 'object_id', object_id, 'case_id', case_id,
                   'outcome', outcome, 'status_code', status_code, 'request_id', request_id)::text
             FROM audit_event
            WHERE (%(actor)s::text IS NULL OR actor_subject = %(actor)s)
              AND (%(action)s::text IS NULL OR action = %(action)s)
              AND (%(case_id)s::uuid IS NULL OR case_id = %(case_id)s)
              AND (%(object_id)s::uuid IS NULL OR object_id = %(object_id)s)
              AND (%(outcome)s::text IS NULL OR outcome = %(outcome)s)
              AND (%(since)s::timestamptz IS NULL OR at >= %(since)s)
              AND (%(until)s::timestamptz IS NULL OR at < %(until)s)
              AND (%(after)s::bigint IS NULL OR id < %(after)s)
            ORDER BY id DESC LIMIT %(limit)s""",
            {
                "actor": actor,
                "action": action,
                "case_id": case_id,
                "object_id": object_id,
                "outcome": outcome,
                "since": since,
                "until": until,
                "after": page.after,
                "limit": page.fetch,
            },
        )
    ).fetchall()
    rows, links = page.finish(rows, key=lambda row: row[0])
    return items_page((row[1] for row in rows), links)
