"""Partners' webhook subscriptions: one organisation's endpoints, never another's."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated

import sqlalchemy as sa
from pydantic import AfterValidator, Field
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.errors import InvalidInput, NotFound
from directory.schemas import UNIQUE_ITEMS, Input, unique

from .models import WebhookDelivery, WebhookSubscription
from .webhooks import EVENT_TYPES, Resolver, SecretBox, check_url, new_secret

# What an endpoint URL may look like, stated in the document and enforced by it: https, a host name
# in ASCII (an IDN in its xn-- form; an IPv4 address reads as one; no IPv6 literals), an optional port,
# a path and query of visible characters; no user info, no fragment. Whether the host resolves, and
# only to public addresses, is checked when subscribing and before each delivery (sync/webhooks.py).
_PORT = r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[1-9][0-9]{0,3})"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
WEBHOOK_URL = rf"^https://{_LABEL}(?:\.{_LABEL})*(?::{_PORT})?(?:[/?][\x21-\x22\x24-\x7e]*)?$"


class SubscriptionIn(Input):
    url: str = Field(
        min_length=8, max_length=500, pattern=WEBHOOK_URL, description="https endpoint on a public address."
    )
    event_types: Annotated[
        list[Annotated[str, Field(json_schema_extra={"enum": sorted(EVENT_TYPES)})]],
        Field(min_length=1, max_length=10, description="e.g. handoff.created"),
        AfterValidator(unique),
        UNIQUE_ITEMS,
    ]


async def create(
    session: AsyncSession,
    *,
    organisation_id: uuid.UUID,
    url: str,
    event_types: list[str],
    created_by: str,
    box: SecretBox,
    resolve: Resolver,
    allow_loopback: bool,
) -> tuple[WebhookSubscription, str]:
    """A new endpoint and its signing secret (returned once, stored encrypted)."""
    unknown = sorted(set(event_types) - EVENT_TYPES)
    if unknown:
        raise InvalidInput("event_types", f"an unknown event type: one of {', '.join(sorted(EVENT_TYPES))}")
    await check_url(url, resolve=resolve, allow_loopback=allow_loopback)
    secret = new_secret()
    subscription = WebhookSubscription(
        organisation_id=organisation_id,
        url=url,
        event_types=sorted(set(event_types)),
        secret_encrypted=box.seal(secret),
        created_by=created_by,
    )
    session.add(subscription)
    await session.flush()
    await session.refresh(subscription)
    return subscription, secret


async def list_(session: AsyncSession, *, organisation_id: uuid.UUID) -> list[WebhookSubscription]:
    return list(
        (
            await session.exec(
                select(WebhookSubscription)
                .where(WebhookSubscription.organisation_id == organisation_id)
                .order_by(sa.asc(sa.column("created_at")))
            )
        ).all()
    )


async def _own(session: AsyncSession, subscription_id: uuid.UUID, organisation_id: uuid.UUID) -> WebhookSubscription:
    subscription = await session.get(WebhookSubscription, subscription_id)
    if subscription is None or subscription.organisation_id != organisation_id:
        raise NotFound("no such subscription")
    return subscription


async def disable(session: AsyncSession, subscription_id: uuid.UUID, *, organisation_id: uuid.UUID) -> None:
    subscription = await _own(session, subscription_id, organisation_id)
    if subscription.disabled_at is None:
        subscription.disabled_at = datetime.now(UTC)
        session.add(subscription)
        await session.flush()


async def deliveries(
    session: AsyncSession, subscription_id: uuid.UUID, *, organisation_id: uuid.UUID, limit: int
) -> list[WebhookDelivery]:
    """The delivery log of one subscription, newest first."""
    await _own(session, subscription_id, organisation_id)
    return list(
        (
            await session.exec(
                select(WebhookDelivery)
                .where(WebhookDelivery.subscription_id == subscription_id)
                .order_by(sa.desc(sa.column("id")))
                .limit(limit)
            )
        ).all()
    )
