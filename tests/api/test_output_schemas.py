"""Every documented response shape against what the SQL really returns.

Hot paths build their JSON in PostgreSQL and pass it through, so nothing checks it against the
output schema at run time: here, for each read of every role, the body must validate against the
route's `response_model`, carry no member the schema does not declare (unless it says `extra`), and
lack none it requires — recursively."""

from __future__ import annotations

import types
import typing
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts
from pydantic import BaseModel, TypeAdapter
from sqlmodel.ext.asyncio.session import AsyncSession
from starlette.routing import compile_path

from directory.models import Visibility
from tests import factories


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation may hold a value of (through Optional, unions and lists)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    origin = typing.get_origin(annotation)
    if origin in (list, typing.Union, types.UnionType):
        return [model for argument in typing.get_args(annotation) for model in _models_in(argument)]
    return []


def conforms(annotation: Any, data: Any, where: str = "$") -> None:
    """Asserts that `data` has exactly the documented shape of `annotation`."""
    TypeAdapter(annotation).validate_python(data)
    if isinstance(data, list):
        for index, item in enumerate(data):
            for model in _models_in(annotation):
                conforms(model, item, f"{where}[{index}]")
        return
    models = [model for model in _models_in(annotation) if isinstance(data, dict)]
    for model in models[:1]:
        declared = {field.alias or name: field for name, field in model.model_fields.items()}
        if model.model_config.get("extra") != "allow":
            assert set(data) <= set(declared), f"{where}: undocumented {sorted(set(data) - set(declared))}"
        missing = [key for key, field in declared.items() if field.is_required() and key not in data]
        assert not missing, f"{where}: missing {missing}"
        for key, field in declared.items():
            if key in data and data[key] is not None:
                nested = _models_in(field.annotation)
                if nested:
                    conforms(field.annotation, data[key], f"{where}.{key}")


def _response_model(app: FastAPI, method: str, path: str) -> Any:
    for context in iter_route_contexts(app.routes):
        route = context.original_route
        if isinstance(route, APIRoute) and method in (context.methods or ()):
            regex, _, _ = compile_path(str(context.path))
            if regex.match(path):
                return route.response_model
    raise AssertionError(f"no route for {method} {path}")


@pytest.fixture
async def reads(client: httpx.AsyncClient, session: AsyncSession, auth) -> list[tuple[str, str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    """(method, path, headers) of a read for each documented JSON response, across roles."""
    org = await factories.organisation(session, name="Foyer")
    public = await factories.location(session, org, lon=2.35, lat=48.85, commune="75056", address="1 quai X")
    house = await factories.location(
        session,
        org,
        lon=2.36,
        lat=48.86,
        commune="75056",
        visibility=Visibility.confidential,
        address="2 rue Y",
        front_door_phone="+33 1 99 00 00 01",
    )
    shelter = await factories.service(session, org, house, specialisms=["emergency-shelter"])
    clinic = await factories.service(session, org, public)
    area = await factories.area(session, clinic, departements=["75"])
    specialist = auth("specialist", subject="s-1")
    owner = auth("partner", org=org.id)
    admin = auth("admin")
    case = await factories.case(client, specialist)
    handoff = await factories.handoff(
        client, specialist, case_id=case["id"], to_organisation_id=str(org.id), to_service_id=str(shelter.id)
    )
    await client.post(f"/v1/cases/{case['id']}/events", headers=specialist, json={"kind": "runaway_started"})
    await factories.move(client, owner, handoff["id"], "acknowledged")
    await client.put(
        f"/v1/handoffs/{handoff['id']}/assignees", headers=specialist, json={"assignees": [{"subject": "s-2"}]}
    )
    reads = []
    for who in (specialist, owner, admin):
        reads += [
            ("GET", f"/v1/services/{shelter.id}", who),
            ("GET", f"/v1/services/{clinic.id}", who),
            ("GET", "/v1/services/search?commune=75056&radius_km=5", who),
            ("GET", f"/v1/organisations/{org.id}", who),
        ]
    for who in (owner, admin):
        reads += [
            ("GET", f"/v1/locations/{house.id}", who),
            ("GET", f"/v1/locations/{public.id}", who),
            ("GET", f"/v1/service-areas/{area.id}", who),
            ("GET", f"/v1/organisations/{org.id}/locations", who),
            ("GET", f"/v1/organisations/{org.id}/service-areas", who),
            ("GET", f"/v1/organisations/{org.id}/freshness", who),
            ("GET", f"/v1/services/{clinic.id}/history", who),
            ("GET", f"/v1/locations/{house.id}/history", who),
        ]
    for who in (specialist, owner):
        reads += [
            ("GET", f"/v1/cases/{case['id']}", who),
            ("GET", f"/v1/cases/{case['id']}/pathway", who),
            ("GET", f"/v1/cases/{case['id']}/competent-crips", who),
            ("GET", f"/v1/handoffs/{handoff['id']}", who),
            ("GET", "/v1/handoffs", who),
        ]
    reads += [
        ("GET", f"/v1/handoffs/{handoff['id']}/assignees", specialist),
        ("GET", "/v1/audit", admin),
        ("GET", "/v1/territories/resolve?lat=48.85&lon=2.35", specialist),
        ("GET", "/v1/collectivites/75C", specialist),
        ("GET", "/v1/communes?q=paris", specialist),
        ("GET", "/v1/specialisms", specialist),
        ("GET", "/v1/organisations", specialist),
    ]
    return reads


async def test_every_read_has_exactly_its_documented_shape(
    app: FastAPI, client: httpx.AsyncClient, reads: list[tuple[str, str, dict[str, str]]]
) -> None:
    checked = 0
    for method, url, headers in reads:
        response = await client.request(method, url, headers=headers)
        assert response.status_code == 200, (url, response.text)
        model = _response_model(app, method, url.split("?")[0])
        assert model is not None, url
        conforms(model, response.json(), url)
        checked += 1
    assert checked == len(reads) >= 40


def test_the_checker_refuses_an_undocumented_member() -> None:
    from api.schemas import AssigneeOut

    good = {"issuer": "i", "subject": "s", "added_at": "2026-12-02T10:00:00Z", "added_by": "x"}
    conforms(list[AssigneeOut], [good])
    with pytest.raises(AssertionError, match="undocumented"):
        conforms(list[AssigneeOut], [{**good, "secret": 1}])
    with pytest.raises(Exception, match="added_by"):
        conforms(AssigneeOut, {k: v for k, v in good.items() if k != "added_by"})
