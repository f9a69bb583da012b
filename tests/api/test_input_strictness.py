"""Inputs are read as the document states them: no value of another shape slips through by coercion
(Schemathesis found these), and a value the document allows is not refused."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlmodel.ext.asyncio.session import AsyncSession

from tests import factories

CASE = {"age": 15, "caller": "relative", "residence_collectivite": "93D", "intake_channel": "phone"}


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"since": "0.5"}, "since"),  # pydantic alone reads a number as a Unix time (1970)
        ({"until": "0"}, "until"),
        ({"since": "2026-01-01 00:00:00Z"}, "since"),  # RFC 3339 needs the T
        ({"since": "2026-01-01T00:00Z"}, "since"),  # and the seconds
        ({"since": "2026-01-01T00:00:00"}, "since"),  # and the offset
    ],
)
async def test_a_date_time_parameter_is_rfc_3339_text_only(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    params: dict[str, str],
    name: str,
) -> None:
    response = await client.get("/v1/audit", headers=auth("admin"), params=params)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["name"] == name


async def test_a_date_time_parameter_in_rfc_3339_is_read(client: httpx.AsyncClient, auth) -> None:  # type: ignore[no-untyped-def]
    response = await client.get("/v1/audit", headers=auth("admin"), params={"since": "2026-01-01T00:00:00+01:00"})
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("starts", [0, 1.5, "0.5", "2026-12-24 22:00:00+01:00"])
async def test_a_date_time_member_is_rfc_3339_text_only(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
    starts: Any,
) -> None:
    org = await factories.organisation(session)
    service = await factories.service(session, org)
    response = await client.post(
        f"/v1/services/{service.id}/closures", headers=auth("partner", org=org.id), json={"from": starts}
    )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/from"
    await session.refresh(service)
    assert service.status == "active"


@pytest.mark.parametrize(("age", "status"), [(9, 201), (9.0, 201), (9.5, 422), ("9", 422), (True, 422), (26, 422)])
async def test_a_whole_number_is_a_json_number_without_a_fraction(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    age: Any,
    status: int,
) -> None:
    """JSON (and JSON Schema's `integer`) has no int/float split: 9.0 is 9. A string or a boolean is
    not a number, and the bounds hold."""
    response = await client.post("/v1/cases", headers=auth("specialist"), json={**CASE, "age": age})
    assert response.status_code == status, response.text
    if status == 201:
        assert response.json()["age"] == 9


@pytest.mark.parametrize("code", [" 93D", "93D ", "93D\u00a0"])
async def test_a_code_with_spaces_around_it_is_refused_not_trimmed(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    code: str,
) -> None:
    """Its pattern says no spaces, so the server says no too (it once trimmed them silently)."""
    response = await client.post("/v1/cases", headers=auth("specialist"), json={**CASE, "residence_collectivite": code})
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["pointer"] == "/residence_collectivite"


async def test_free_text_is_trimmed_of_spaces_and_a_blank_one_refused(
    client: httpx.AsyncClient,
    auth,  # type: ignore[no-untyped-def]
    session: AsyncSession,
) -> None:
    org = await factories.organisation(session)
    partner = auth("partner", org=org.id)
    created = await client.post(
        "/v1/services", headers=partner, json={"name": "\u00a0 Permanence\u3000", "specialisms": ["outreach"]}
    )
    assert created.status_code == 201, created.text
    assert created.json()["properties"]["name"] == "Permanence"
    for blank in (" ", "\u00a0\u2003"):
        refused = await client.post("/v1/services", headers=partner, json={"name": blank, "specialisms": ["outreach"]})
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"] == [{"in": "body", "pointer": "/name", "message": "must not be blank"}]
    # A control character at the edge is not a space to trim: it is refused like anywhere else.
    edged = await client.post(
        "/v1/services", headers=partner, json={"name": "Permanence\x0c", "specialisms": ["outreach"]}
    )
    assert edged.status_code == 422, edged.text
    assert edged.json()["errors"][0]["pointer"] == "/name"


def _keys(node: Any) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {key for value in node.values() for key in _keys(value)}
    if isinstance(node, list):
        return {key for value in node for key in _keys(value)}
    return set()


def test_no_constraint_leaks_into_the_document_under_pydantic_s_own_name(base_app: FastAPI) -> None:
    """A bound pydantic cannot push into the schema it wraps comes out as `ge`/`le`, which no client reads:
    every bound must be stated as JSON Schema's minimum, maximum, minLength…"""
    leaked = _keys(base_app.openapi()) & {"ge", "le", "gt", "lt", "min_length", "max_length", "strict"}
    assert not leaked
