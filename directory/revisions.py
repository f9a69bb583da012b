"""Versioned writes of shared records, and the append-only history of listing changes.

- Concurrency: every write is a conditional UPDATE on the version the caller read (its ETag). Of two
  writers holding the same ETag, exactly one updates the row; the other gets StaleVersion (412).
- Order: a write loads its row through the caller's scope (404), then `check_version` (412), then
  validates (422), then writes: a stale ETag is answered before anything about the body, and no
  validation runs for a caller that has not proved it holds the current version.
- History: each listing change appends one listing_revision row with the fields, old and new values,
  and who made it; the organisation and service it belongs to are derived from the row itself.
  Domain functions only flush; the route commits.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from geoalchemy2.shape import to_shape
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from .access import Principal
from .errors import InvalidInput, StaleVersion
from .models import Entity, ListingRevision, Location, Organisation, Service, ServiceArea


async def sql(session: AsyncSession, statement: str, params: Mapping[str, Any]) -> Any:
    """Plain SQL (`:name` parameters) in the session's transaction."""
    return await (await session.connection()).execute(sa.text(statement), dict(params))


async def driver(session: AsyncSession) -> AsyncConnection:
    """The session's own psycopg connection (same transaction), for the functions of geo/ and the
    SQL-built reads that take one."""
    raw = await (await session.connection()).get_raw_connection()
    return raw.driver_connection  # type: ignore[return-value]


def jsonable(value: Any) -> Any:
    """History keeps plain JSON: points as [lon, lat], times as ISO strings, enums as values."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, list | tuple):
        return [jsonable(item) for item in value]
    if isinstance(value, dict):
        return {key: jsonable(item) for key, item in value.items()}
    if hasattr(value, "value"):  # StrEnum
        return value.value
    if hasattr(value, "desc") or hasattr(value, "data"):  # geometry elements
        shape = to_shape(value)
        return [round(shape.x, 7), round(shape.y, 7)]
    return str(value)


async def _owners(session: AsyncSession, row: Any) -> tuple[Entity, uuid.UUID, uuid.UUID | None]:
    """(entity, organisation, service) a row's history belongs to."""
    if isinstance(row, Organisation):
        return Entity.organisation, row.id, None
    if isinstance(row, Service):
        return Entity.service, row.organisation_id, row.id
    if isinstance(row, Location):
        return Entity.location, row.organisation_id, None
    if isinstance(row, ServiceArea):
        service = await session.get(Service, row.service_id)
        assert service is not None, "an area always belongs to a service (foreign key)"
        return Entity.service_area, service.organisation_id, service.id
    raise TypeError(f"{type(row).__name__} has no listing history")


async def record(
    session: AsyncSession,
    row: Any,
    *,
    action: str,
    changes: Mapping[str, Any],
    actor: Principal,
    request_id: str | None,
) -> None:
    """Append one revision of `row` (flushed)."""
    entity, organisation_id, service_id = await _owners(session, row)
    session.add(
        ListingRevision(
            entity=entity,
            entity_id=row.id,
            service_id=service_id,
            organisation_id=organisation_id,
            action=action,
            changes=dict(changes),
            actor_subject=actor.subject,
            actor_role=actor.role,
            actor_client_id=actor.client_id,
            actor_organisation_id=actor.organisation_id,
            request_id=request_id,
        )
    )
    await session.flush()


async def record_creation(
    session: AsyncSession, row: Any, fields: Iterable[str], *, actor: Principal, request_id: str | None
) -> None:
    """The 'create' revision of a new row: each field given, from nothing to its stored value."""
    changes = {field: {"old": None, "new": jsonable(getattr(row, field))} for field in fields}
    await record(session, row, action="create", changes=changes, actor=actor, request_id=request_id)


def refuse_clearing(patch: Any, required: tuple[str, ...]) -> None:
    """JSON Merge Patch: `null` removes a member, which a required field cannot lose."""
    for field in required:
        if field in patch.model_fields_set and getattr(patch, field) is None:
            raise InvalidInput(field, "cannot be cleared")


@dataclass(frozen=True)
class Expected:
    """What a write's If-Match said: the versions the caller holds (None for `*`), or why it holds
    none. Judged by `check_version` only once the row is found in the caller's scope, so that "not
    yours" is a 404 before any 428 or 412 (DESIGN §3: scope, then preconditions)."""

    versions: frozenset[int] | None
    refusal: Exception | None = None  # raised as is: a domain error, or the API's for a malformed header


def check_version(row: Any, expected: Expected | None) -> None:
    """The precondition (428/412): the row is at one of the versions the caller holds (None: the
    domain's own writes, which need none). Call it right after loading the row, before validating."""
    if expected is None:
        return
    if expected.refusal is not None:
        raise expected.refusal
    if expected.versions is not None and row.version not in expected.versions:
        raise StaleVersion(f"this record is now at version {row.version}: read it again")


async def lock_at_version(session: AsyncSession, row: Any, expected: Expected | None) -> None:
    """Lock the row (FOR UPDATE), read it again and check the precondition against what it holds now:
    for a write that judges the row before changing it (a closure must not replace a suspension). The
    check, the judgement and the write then see one version, and no other writer comes between them;
    pass `locked=True` to `update_row` after it."""
    await session.refresh(row, with_for_update=True)
    check_version(row, expected)


async def conditional_update(
    session: AsyncSession,
    row: Any,
    *,
    expected_version: Expected | None,
    values: Mapping[str, Any],
    refresh: bool = True,
    locked: bool = False,
) -> None:
    """UPDATE the row only if it is still at the version it was read at (and at one of the versions the
    caller holds, when given): of two writers holding the same version, exactly one succeeds. A write
    whose caller set no precondition first waits for any other writer of the row and applies to what it
    left: with no If-Match, "changed meanwhile" (412) is not an answer the caller can act on."""
    model = type(row)
    if expected_version is None and not locked:
        await session.refresh(row, with_for_update=True)
    check_version(row, expected_version)
    result = await session.exec(
        sa.update(model)
        .where(model.id == row.id, model.version == row.version)
        .values(
            **values,
            version=model.version + 1,
            **({"updated_at": sa.func.now()} if hasattr(model, "updated_at") else {}),
        )
        .returning(model.version)
    )
    if result.first() is None:  # another writer got there first, between our read and our write
        raise StaleVersion("this record was changed meanwhile: read it again")
    if refresh:
        await session.refresh(row)


async def update_row(
    session: AsyncSession,
    row: Any,
    *,
    expected_version: Expected | None,
    values: Mapping[str, Any],
    action: str,
    actor: Principal,
    request_id: str | None,
    always: bool = False,
    locked: bool = False,
) -> dict[str, Any]:
    """Apply `values` to a listing row (Organisation, Service, Location, ServiceArea) if it is still at
    one of the versions the caller read, and record the revision. Returns the changes recorded; a
    write that changes nothing records nothing and keeps the version, unless `always`. Without a
    precondition the row is locked and read again first, so that the changes recorded are against
    what it holds now (`locked`: the caller did so already, to judge the row before writing)."""
    if expected_version is None and not locked:
        await session.refresh(row, with_for_update=True)
    check_version(row, expected_version)
    changes = {
        field: {"old": jsonable(getattr(row, field)), "new": jsonable(value)}
        for field, value in values.items()
        if jsonable(getattr(row, field)) != jsonable(value)
    }
    if not changes and not always:
        return {}
    await conditional_update(session, row, expected_version=expected_version, values=values, refresh=False, locked=True)
    await record(session, row, action=action, changes=changes, actor=actor, request_id=request_id)
    await session.refresh(row)
    return changes
