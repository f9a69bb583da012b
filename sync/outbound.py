"""The transactional outbox: events are written with the change they report, delivered after commit.

`enqueue` runs in the caller's transaction, so an event exists if and only if its change committed.
`deliver_due` claims due deliveries with SKIP LOCKED (several workers never send the same one twice at
once), sends them signed, and records the outcome; the caller's request never waits on a partner.
Payloads carry ids only: the receiver fetches the details with its own token, under its own scope.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx
import sqlalchemy as sa
import structlog
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from .errors import InvalidWebhookUrl
from .models import DeliveryStatus, OutboxEvent, WebhookDelivery, WebhookSubscription
from .webhooks import RETRY_FOR, Resolver, SecretBox, check_url, next_attempt, signed_headers

log = structlog.get_logger("maillage.webhooks")
TIMEOUT = httpx.Timeout(10.0, connect=5.0)


async def enqueue(
    session: AsyncSession, *, type: str, data: dict[str, Any], organisation_ids: Iterable[uuid.UUID | None]
) -> OutboxEvent | None:
    """Queue an event for the active subscriptions of these organisations to this type."""
    targets = {o for o in organisation_ids if o is not None}
    if not targets:
        return None
    subscriptions = (
        await session.exec(
            select(WebhookSubscription.id).where(
                WebhookSubscription.organisation_id.in_(targets),  # type: ignore[attr-defined]
                WebhookSubscription.disabled_at.is_(None),  # type: ignore[union-attr]
                sa.literal(type) == sa.any_(WebhookSubscription.event_types),  # type: ignore[arg-type]
            )
        )
    ).all()
    if not subscriptions:
        return None
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    event = OutboxEvent(type=type, payload={key: str(value) for key, value in data.items()}, request_id=request_id)
    session.add(event)
    await session.flush()
    assert event.id is not None
    for subscription_id in subscriptions:
        session.add(WebhookDelivery(outbox_event_id=event.id, subscription_id=subscription_id))
    await session.flush()
    # The worker's `webhooks.deliver` job (api/jobs.py), queued in this transaction: it runs once the
    # events are committed, not at the next tick.
    await (await session.connection()).execute(
        sa.text("SELECT queue_webhook_delivery(:request_id)"), {"request_id": request_id}
    )
    return event


@dataclass
class DeliveryReport:
    delivered: int = 0
    failed: int = 0
    dead: int = 0


async def deliver_due(
    session: AsyncSession,
    http: httpx.AsyncClient,
    box: SecretBox,
    *,
    resolve: Resolver,
    allow_loopback: bool,
    now: datetime | None = None,
    limit: int = 20,
) -> DeliveryReport:
    """Send the deliveries that are due; the caller commits. Safe to run from several processes."""
    now = now or datetime.now(UTC)
    rows = (
        await session.exec(
            select(WebhookDelivery, OutboxEvent, WebhookSubscription)
            .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.outbox_event_id)  # type: ignore[arg-type]
            .join(WebhookSubscription, WebhookSubscription.id == WebhookDelivery.subscription_id)  # type: ignore[arg-type]
            .where(WebhookDelivery.status == DeliveryStatus.pending, WebhookDelivery.next_attempt_at <= now)
            .order_by(sa.asc(WebhookDelivery.__table__.c.next_attempt_at))  # type: ignore[attr-defined]
            .limit(limit)
            .with_for_update(skip_locked=True, of=WebhookDelivery)
        )
    ).all()
    report = DeliveryReport()
    outcomes = await asyncio.gather(
        *(
            _send(http, box, delivery, event, subscription, resolve=resolve, allow_loopback=allow_loopback, now=now)
            for delivery, event, subscription in rows
        )
    )
    for (delivery, event, subscription), (status_code, error) in zip(rows, outcomes, strict=True):
        delivery.attempts += 1
        delivery.last_attempt_at = now
        delivery.last_status_code = status_code
        delivery.last_error = error
        about = {
            "subscription_id": str(subscription.id),
            "event_id": str(event.event_id),
            "request_id": event.request_id,
            "attempt": delivery.attempts,
        }
        if error is None:
            delivery.status = DeliveryStatus.delivered
            delivery.delivered_at = now
            report.delivered += 1
            log.info("webhook.delivered", status_code=status_code, **about)
        elif now - event.created_at >= RETRY_FOR:
            delivery.status = DeliveryStatus.dead
            report.dead += 1
            log.warning("webhook.dead_letter", error=error, **about)
        else:
            delivery.next_attempt_at = next_attempt(delivery.attempts, now=now)
            report.failed += 1
            log.info("webhook.failed", error=error, retry_at=delivery.next_attempt_at.isoformat(), **about)
        session.add(delivery)
    await session.flush()
    return report


async def _send(
    http: httpx.AsyncClient,
    box: SecretBox,
    delivery: WebhookDelivery,
    event: OutboxEvent,
    subscription: WebhookSubscription,
    *,
    resolve: Resolver,
    allow_loopback: bool,
    now: datetime,
) -> tuple[int | None, str | None]:
    body = json.dumps(
        {"type": event.type, "timestamp": event.created_at.isoformat(), "data": event.payload}, separators=(",", ":")
    )
    try:
        host, _, addresses = await check_url(subscription.url, resolve=resolve, allow_loopback=allow_loopback)
    except InvalidWebhookUrl as exc:
        return None, exc.detail[:200]
    url = httpx.URL(subscription.url)
    headers = signed_headers(
        box.open(subscription.secret_encrypted), message_id=str(event.event_id), timestamp=now, body=body
    )
    headers["host"] = url.netloc.decode()
    # Connect to the address that was just checked, not to whatever the name resolves to next.
    pinned = url.copy_with(host=addresses[0])
    try:
        response = await http.post(
            pinned,
            content=body,
            headers=headers,
            timeout=TIMEOUT,
            follow_redirects=False,
            extensions={"sni_hostname": host} if url.scheme == "https" else {},
        )
    except httpx.HTTPError as exc:
        return None, f"{type(exc).__name__}"[:200]
    if 200 <= response.status_code < 300:
        return response.status_code, None
    return response.status_code, f"HTTP {response.status_code}"
