"""Scope before preconditions and body (DESIGN §3): "not yours" is the same 404 as "does not exist",
whatever If-Match or body the caller sends, and nothing changes."""

from __future__ import annotations

import uuid

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from api.auth import Allow
from api.scoping import InScope
from tests import factories
from tests.api.test_listings import fingerprint

# Every route that takes both an id in its path and a body, and the kind of row the id names.
EXPECTED = {
    ("PATCH", "/v1/services/{service_id}"),
    ("PUT", "/v1/services/{service_id}/capacity"),
    ("POST", "/v1/services/{service_id}/closures"),
    ("PATCH", "/v1/locations/{location_id}"),
    ("PATCH", "/v1/service-areas/{area_id}"),
    ("PATCH", "/v1/organisations/{organisation_id}"),
    ("POST", "/v1/organisations/{organisation_id}/verification"),
    ("PATCH", "/v1/cases/{case_id}"),
    ("POST", "/v1/cases/{case_id}/events"),
    ("POST", "/v1/handoffs/{handoff_id}/transitions"),
    ("PUT", "/v1/handoffs/{handoff_id}/assignees"),
}


def _calls(dependant: object) -> list[object]:
    return [dependency.call for dependency in getattr(dependant, "dependencies", [])]


def test_every_route_with_an_id_and_a_body_checks_scope_after_its_policy(app: FastAPI) -> None:
    found = set()
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if not isinstance(route, APIRoute) or not str(context.path).startswith("/v1"):
            continue
        dependant = context.dependant
        if not (dependant.body_params and dependant.path_params):
            continue
        calls = _calls(dependant)
        policy = [i for i, call in enumerate(calls) if isinstance(call, Allow)]
        scope = [i for i, call in enumerate(calls) if isinstance(call, InScope)]
        for method in context.methods or ():
            found.add((method, str(context.path)))
            assert policy, (method, context.path)
            assert scope, (method, context.path)
            assert policy[0] < scope[0], f"{method} {context.path}: scope must follow the policy"
    assert found == EXPECTED


@pytest.fixture
async def others(client: httpx.AsyncClient, session: AsyncSession, auth) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Rows of organisation A and a case the 119 hands to A, for a caller who is neither."""
    a = await factories.organisation(session, name="A")
    place = await factories.location(session, a, lon=2.35, lat=48.85, commune="75056")
    service = await factories.service(session, a, place)
    area = await factories.area(session, service, departements=["75"])
    specialist = auth("specialist", subject="s-1")
    case = await factories.case(client, specialist)
    handoff = await factories.handoff(client, specialist, case_id=case["id"], to_organisation_id=str(a.id))
    return {
        "service_id": str(service.id),
        "location_id": str(place.id),
        "area_id": str(area.id),
        "organisation_id": str(a.id),
        "case_id": case["id"],
        "handoff_id": handoff["id"],
    }


@pytest.mark.parametrize(("method", "path"), sorted(EXPECTED))
@pytest.mark.parametrize("body", [b'{"zzz": 1, "name": 5}', b"[]", b'{"to": "nowhere"}'])
async def test_not_yours_is_a_404_whatever_the_body_and_preconditions(
    client: httpx.AsyncClient,
    reader: AsyncConnection,
    auth,  # type: ignore[no-untyped-def]
    others: dict[str, str],
    method: str,
    path: str,
    body: bytes,
) -> None:
    # Who may call the route but not reach A's rows: another partner, except on routes whose callers
    # reach every row (admins for organisations, specialists for cases and assignees): for those,
    # only a missing id is out of scope.
    role = (
        "admin"
        if path.startswith("/v1/organisations")
        else "specialist"
        if path == "/v1/cases/{case_id}" or path.endswith("/assignees")
        else None
    )
    stranger = auth(role, subject="s-9") if role else auth("partner", org=uuid.uuid4(), subject="b")
    for headers in ({}, {"If-Match": '"1"'}, {"If-Match": "garbage"}):
        request_headers = {**stranger, **headers, "Content-Type": "application/json"}
        ids = {key: str(uuid.uuid4()) for key in others}
        missing = await client.request(method, path.format(**ids), headers=request_headers, content=body)
        assert missing.status_code == 404, (path, missing.text)
        if role is None:
            before = await fingerprint(reader)
            hidden = await client.request(method, path.format(**others), headers=request_headers, content=body)
            assert hidden.status_code == 404, (path, hidden.text)
            assert hidden.json()["detail"] == missing.json()["detail"]
            assert await fingerprint(reader) == before


async def test_a_specialist_not_working_a_handoff_gets_403_before_its_body_is_read(
    client: httpx.AsyncClient,
    auth,
    others: dict[str, str],  # type: ignore[no-untyped-def]
) -> None:
    refused = await client.put(
        f"/v1/handoffs/{others['handoff_id']}/assignees",
        headers={**auth("specialist", subject="s-9"), "Content-Type": "application/json"},
        json={"assignees": []},
    )
    assert refused.status_code == 403
