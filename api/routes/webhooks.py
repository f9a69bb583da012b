"""Partners' webhook subscriptions and their delivery log."""

import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request, Response

from directory.access import Principal, Role
from sync import subscriptions
from sync.models import WebhookDelivery, WebhookSubscription
from sync.subscriptions import SubscriptionIn

from ..auth import Allow, AllowWrites
from ..db import SessionDep
from ..errors import problem_responses
from ..etags import documented
from ..links import ID, absolute, follow
from ..params import Limit
from ..schemas import DeliveryOut, SubscriptionOut, SubscriptionSecret
from .clients import NO_STORE

router = APIRouter(prefix="/v1", tags=["webhooks"])

Partner = Annotated[Principal, Depends(Allow(Role.partner))]
PartnerWriter = Annotated[Principal, Depends(AllowWrites(Role.partner))]
SubscriptionId = Annotated[uuid.UUID, Path()]


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
    responses={
        **documented(
            201,
            etag=False,
            links={
                "Deliveries": follow("list_deliveries", "Its deliveries.", subscription_id=ID),
                "Disable": follow("disable_subscription", "Disable it.", subscription_id=ID),
            },
        ),
        **problem_responses(401, 403, 413, 422, 429),
    },
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
    response.headers["Location"] = absolute(f"/v1/webhook-subscriptions/{subscription.id}")
    return _out(subscription, secret)


@router.get("/webhook-subscriptions", response_model=list[SubscriptionOut], responses=problem_responses(401, 403))
async def list_subscriptions(session: SessionDep, principal: Partner) -> list[dict[str, Any]]:
    """Your organisation's endpoints."""
    assert principal.organisation_id is not None
    return [_out(s) for s in await subscriptions.list_(session, organisation_id=principal.organisation_id)]


@router.delete(
    "/webhook-subscriptions/{subscription_id}", status_code=204, responses=problem_responses(401, 403, 404, 422, 429)
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
