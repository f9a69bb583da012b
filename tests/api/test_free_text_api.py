"""Free text refuses identifying data, through the API (issue 9): a 422 naming the field, never the
value, and nothing written — for a case's safe_contact (create and patch), a handoff's reason, a
transition's reason and a pathway event's note."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from tests import factories
from tests.conftest import Tokens
from tests.directory.test_free_text import TABLE_ACCEPTED, TABLE_REFUSED, fragments

CASE = {
    "age": 15,
    "gender": "female",
    "residence_collectivite": "93D",
    "found_in_commune": "75056",
    "intake_channel": "phone",
    "caller": "parent",
    "needs": ["emergency-shelter"],
    "safe_contact": "joignable après 18h",
}
HANDOFF = {
    "kind": "orientation",
    "beneficiary": "minor",
    "urgency": "within_24h",
    "legal_basis": "child_protection_duty",
}

# One of each kind, through every endpoint (the whole table goes through POST /v1/cases).
ONE_OF_EACH = [
    ("+33 6 12 34 56 78", "a phone number"),
    ("tante.martin@example.org", "an e-mail address"),
    ("3 bis avenue Jean Jaurès", "a street address"),
    ("née le 03/04/2010", "a date of birth"),
]


@dataclass
class World:
    specialist: dict[str, str]
    partner: dict[str, str]  # receives the handoff
    partner_org: uuid.UUID
    case_id: str
    handoff_id: str


@pytest.fixture
async def world(client: httpx.AsyncClient, session: AsyncSession, auth: Tokens) -> World:
    org = await factories.organisation(session, name="Asso libre")
    specialist = auth("specialist", subject="specialiste-libre")
    case = await client.post("/v1/cases", headers=specialist, json=CASE)
    assert case.status_code == 201, case.text
    handoff = await client.post(
        "/v1/handoffs",
        headers={**specialist, "Idempotency-Key": str(uuid.uuid4())},
        json={**HANDOFF, "case_id": case.json()["id"], "to_organisation_id": str(org.id)},
    )
    assert handoff.status_code == 201, handoff.text
    partner = auth("partner", org=org.id, subject="asso-libre")
    return World(specialist, partner, org.id, case.json()["id"], handoff.json()["id"])


async def _counts(reader: AsyncConnection) -> tuple[int, ...]:
    row = await (
        await reader.execute(
            """SELECT (SELECT count(*) FROM case_record), (SELECT count(*) FROM handoff),
                  (SELECT count(*) FROM handoff_event), (SELECT count(*) FROM case_event),
                  (SELECT count(*) FROM outbox_event)"""
        )
    ).fetchone()
    assert row is not None
    return tuple(row)


def assert_refused(response: httpx.Response, pointer: str, value: str, kind: str) -> None:
    """422 naming the field and the kind of data, and nothing of the value anywhere in the body."""
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    problem = response.json()
    assert problem["code"] == "invalid_request"
    assert [e["pointer"] for e in problem["errors"]] == [pointer]
    assert f"looks like {kind}" in problem["errors"][0]["message"]
    assert problem["detail"].startswith(f"{pointer}: ")
    assert not {"input", "ctx"} & set(problem["errors"][0])
    texts = (response.text, json.dumps(problem, ensure_ascii=False), json.dumps(problem))
    leaked = {fragment for fragment in fragments(value) for text in texts if fragment in text}
    assert not leaked, leaked


@pytest.mark.parametrize(("value", "kind"), TABLE_REFUSED, ids=[v for v, _ in TABLE_REFUSED])
async def test_a_case_refuses_it_in_safe_contact(
    client: httpx.AsyncClient, specialist: dict[str, str], reader: AsyncConnection, value: str, kind: str
) -> None:
    before = await _counts(reader)
    response = await client.post("/v1/cases", headers=specialist, json={**CASE, "safe_contact": value})
    assert_refused(response, "/safe_contact", value, kind)
    assert await _counts(reader) == before


@pytest.mark.parametrize("value", TABLE_ACCEPTED)
async def test_a_case_keeps_what_is_not_identifying(
    client: httpx.AsyncClient, specialist: dict[str, str], value: str
) -> None:
    response = await client.post("/v1/cases", headers=specialist, json={**CASE, "safe_contact": value})
    assert response.status_code == 201, response.text
    assert response.json()["safe_contact"] == value


@pytest.mark.parametrize(("value", "kind"), ONE_OF_EACH, ids=[v for v, _ in ONE_OF_EACH])
async def test_a_case_patch_refuses_it(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, value: str, kind: str
) -> None:
    url = f"/v1/cases/{world.case_id}"
    seen = await client.get(url, headers=world.specialist)
    before = await _counts(reader)
    response = await client.patch(
        url, headers={**world.specialist, "If-Match": seen.headers["etag"]}, json={"safe_contact": value, "age": 16}
    )
    assert_refused(response, "/safe_contact", value, kind)
    assert await _counts(reader) == before
    after = await client.get(url, headers=world.specialist)
    assert after.headers["etag"] == seen.headers["etag"]
    assert (after.json()["safe_contact"], after.json()["age"]) == (CASE["safe_contact"], 15)


@pytest.mark.parametrize(("value", "kind"), ONE_OF_EACH, ids=[v for v, _ in ONE_OF_EACH])
async def test_a_handoff_refuses_it_in_its_reason(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, value: str, kind: str
) -> None:
    headers = {**world.specialist, "Idempotency-Key": str(uuid.uuid4())}
    body: dict[str, Any] = {**HANDOFF, "case_id": world.case_id, "to_organisation_id": str(world.partner_org)}
    before = await _counts(reader)
    response = await client.post("/v1/handoffs", headers=headers, json={**body, "reason": value})
    assert_refused(response, "/reason", value, kind)
    assert await _counts(reader) == before
    # The refusal did not spend the key: the corrected request goes through with it.
    corrected = await client.post("/v1/handoffs", headers=headers, json={**body, "reason": "appeler le 119"})
    assert corrected.status_code == 201, corrected.text
    assert corrected.json()["reason"] == "appeler le 119"


@pytest.mark.parametrize(("value", "kind"), ONE_OF_EACH, ids=[v for v, _ in ONE_OF_EACH])
async def test_a_transition_refuses_it_in_its_reason(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, value: str, kind: str
) -> None:
    url = f"/v1/handoffs/{world.handoff_id}"
    before = await _counts(reader)
    for move in ({"to": "accepted", "reason": value}, {"to": "declined", "reason_code": "other", "reason": value}):
        response = await client.post(f"{url}/transitions", headers=world.partner, json=move)
        assert_refused(response, "/reason", value, kind)
    assert await _counts(reader) == before
    assert (await client.get(url, headers=world.specialist)).json()["status"] == "sent"
    accepted = await client.post(
        f"{url}/transitions", headers=world.partner, json={"to": "accepted", "reason": "le 115 a été prévenu"}
    )
    assert accepted.status_code == 200, accepted.text


@pytest.mark.parametrize(("value", "kind"), ONE_OF_EACH, ids=[v for v, _ in ONE_OF_EACH])
async def test_a_pathway_event_refuses_it_in_its_note(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, value: str, kind: str
) -> None:
    url = f"/v1/cases/{world.case_id}/events"
    before = await _counts(reader)
    for event in ({"kind": "note", "note": value}, {"kind": "runaway_started", "note": value}):
        for headers in (world.specialist, world.partner):
            assert_refused(await client.post(url, headers=headers, json=event), "/note", value, kind)
    assert await _counts(reader) == before
    kept = await client.post(url, headers=world.specialist, json={"kind": "note", "note": "fugue depuis le 12/11/2026"})
    assert kept.status_code == 201, kept.text
    assert kept.json()["note"] == "fugue depuis le 12/11/2026"
