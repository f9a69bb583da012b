"""Partners' webhook subscriptions and the delivery log; the audit trail for admins."""

import json
import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import Field

from directory.access import Principal, Role
from sync import subscriptions
from sync.models import WebhookDelivery, WebhookSubscription

from ..auth import Allow, AllowWrites
from ..db import ReaderDep, SessionDep
from ..errors import problem_responses
from ..pagination import Pagination
from ..params import Cursor, Limit, StrictModel
from ..responses import JSONText
from ..schemas import AuditPage, DeliveryOut, SubscriptionOut, SubscriptionSecret
from .clients import NO_STORE

router = APIRouter(prefix="/v1", tags=["webhooks"])

Partner = Annotated[Principal, Depends(Allow(Role.partner))]
PartnerWriter = Annotated[Principal, Depends(AllowWrites(Role.partner))]
SubscriptionId = Annotated[uuid.UUID, Path()]


class SubscriptionIn(StrictModel):
    url: str = Field(min_length=8, max_length=500, description="https endpoint on a public address.")
    event_types: list[str] = Field(min_length=1, max_length=10, description="e.g. handoff.created")


def _out(subscription: WebhookSubscription, secret: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": subscription.id,
        "url": subscription.url,
        "event_types": subscription.event_types,
        "created_at": subscription.created_at,
        "disabled_at": subscription.disabled_at,
    }
    if secret is not None:
        body["secret"] = secret
    return body


@router.post(
    "/webhook-subscriptions",
    status_code=201,
    response_model=SubscriptionSecret,
    responses=problem_responses(401, 403, 413, 422, 429),
)
async def create_subscription(
    request: Request, session: SessionDep, principal: PartnerWriter, body: SubscriptionIn, response: Response
) -> dict[str, Any]:
    """Register an endpoint for your organisation's events. The signing secret (Standard Webhooks) is in
    this response only. Payloads carry ids only: fetch the details with your token."""
    response.headers.update(NO_STORE)
    assert principal.organisation_id is not None
    state = request.app.state
    subscription, secret = await subscriptions.create(
        session,
        organisation_id=principal.organisation_id,
        url=body.url,
        event_types=body.event_types,
        created_by=principal.subject,
        box=state.secret_box,
        resolve=state.resolver,
        allow_loopback=state.settings.webhooks_allow_loopback,
    )
    await session.commit()
    return _out(subscription, secret)


@router.get("/webhook-subscriptions", response_model=list[SubscriptionOut], responses=problem_responses(401, 403))
async def list_subscriptions(session: SessionDep, principal: Partner) -> list[dict[str, Any]]:
    """Your organisation's endpoints."""
    assert principal.organisation_id is not None
    return [_out(s) for s in await subscriptions.list_(session, organisation_id=principal.organisation_id)]


@router.delete(
    "/webhook-subscriptions/{subscription_id}", status_code=204, responses=problem_responses(401, 403, 404, 429)
)
async def disable_subscription(
    session: SessionDep, principal: PartnerWriter, subscription_id: SubscriptionId
) -> Response:
    """Stop sending events to this endpoint."""
    assert principal.organisation_id is not None
    await subscriptions.disable(session, subscription_id, organisation_id=principal.organisation_id)
    await session.commit()
    return Response(status_code=204)


@router.get(
    "/webhook-subscriptions/{subscription_id}/deliveries",
    response_model=list[DeliveryOut],
    responses=problem_responses(401, 403, 404, 422),
)
async def list_deliveries(
    session: SessionDep, principal: Partner, subscription_id: SubscriptionId, limit: Limit = 20
) -> list[dict[str, Any]]:
    """The delivery log of an endpoint, newest first: attempts, last status, next retry."""
    assert principal.organisation_id is not None
    rows: list[WebhookDelivery] = await subscriptions.deliveries(
        session, subscription_id, organisation_id=principal.organisation_id, limit=limit
    )
    return [
        {
            "id": d.id,
            "outbox_event_id": d.outbox_event_id,
            "status": d.status,
            "attempts": d.attempts,
            "next_attempt_at": d.next_attempt_at,
            "last_attempt_at": d.last_attempt_at,
            "last_status_code": d.last_status_code,
            "last_error": d.last_error,
            "delivered_at": d.delivered_at,
        }
        for d in rows
    ]


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
    since: datetime | None = None,
    until: datetime | None = None,
    limit: Limit = 20,
    cursor: Cursor = None,
) -> JSONText:
    """The journal of case data access (admins), newest first, with filters."""
    page = Pagination(request, "audit", int, limit=limit, cursor=cursor)
    rows = await (
        await conn.execute(
            """SELECT id, json_build_object('id', id, 'at', at, 'actor', json_build_object(
                      'subject', actor_subject, 'role', actor_role, 'organisation_id', actor_organisation_id),
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
    return JSONText('{"items":[' + ",".join(row[1] for row in rows) + '],"links":' + json.dumps(links) + "}")
