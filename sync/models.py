"""Outbound coordination tables: webhook subscriptions, the transactional outbox, deliveries."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field, SQLModel

from directory.models import text_array
from geo.columns import created_at, enum_column


class DeliveryStatus(StrEnum):
    pending = "pending"
    delivered = "delivered"
    dead = "dead"  # retried for 24 hours without success: left for a human to look at


class WebhookSubscription(SQLModel, table=True):
    __tablename__ = "webhook_subscription"

    id: uuid.UUID = Field(default_factory=uuid.uuid4, primary_key=True)
    organisation_id: uuid.UUID = Field(foreign_key="organisation.id", index=True)
    url: str = Field(max_length=500)
    event_types: list[str] = text_array(64)
    # The Standard Webhooks signing secret, encrypted with the server's key (never stored in clear).
    secret_encrypted: str = Field(max_length=500)
    created_by: str = Field(max_length=200)
    created_at: datetime = created_at()
    disabled_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))


class OutboxEvent(SQLModel, table=True):
    """Written in the same transaction as the change it reports; delivered after commit."""

    __tablename__ = "outbox_event"

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    event_id: uuid.UUID = Field(default_factory=uuid.uuid4, unique=True)  # the webhook-id header
    type: str = Field(max_length=64)
    # Ids only: receivers fetch details with their own token, under their own scope.
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    # The request (or job) that caused it: its deliveries' log lines carry it, whichever process sends them.
    request_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = created_at()


class WebhookDelivery(SQLModel, table=True):
    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.Index("ix_webhook_delivery__due", "next_attempt_at", postgresql_where=sa.text("status = 'pending'")),
        sa.UniqueConstraint("outbox_event_id", "subscription_id", name="uq_webhook_delivery__event_subscription"),
    )

    id: int | None = Field(default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True))
    outbox_event_id: int = Field(sa_type=sa.BigInteger, foreign_key="outbox_event.id", index=True)
    subscription_id: uuid.UUID = Field(foreign_key="webhook_subscription.id", index=True)
    status: DeliveryStatus = enum_column(
        DeliveryStatus, default=DeliveryStatus.pending, server_default=DeliveryStatus.pending
    )
    attempts: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    next_attempt_at: datetime = created_at()
    last_attempt_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    last_status_code: int | None = Field(default=None, sa_type=sa.SmallInteger)
    last_error: str | None = Field(default=None, max_length=200)
    delivered_at: datetime | None = Field(default=None, sa_type=sa.DateTime(timezone=True))
    created_at: datetime = created_at()
