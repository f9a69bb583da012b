"""Need-to-know on care pathways (issue 9, B3, B6, B7): who sees a safe house exactly, what a partner
sees of a case and for how long, and whose Idempotency-Key is whose."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import httpx
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory.models import Visibility
from tests import factories

# Saint-Flour (15187): a safe house 3 km south of the commune's point.
SAINT_FLOUR = "15187"
HOUSE = (3.0930, 45.0070)
HOUSE_ADDRESS = "7 rue des Tilleuls"


async def _counts(reader: AsyncConnection) -> tuple[int, ...]:
    row = await (
        await reader.execute(
            """SELECT (SELECT count(*) FROM case_record), (SELECT count(*) FROM handoff),
                  (SELECT count(*) FROM handoff_event), (SELECT count(*) FROM case_event),
                  (SELECT count(*) FROM handoff_assignee), (SELECT count(*) FROM outbox_event)"""
        )
    ).fetchone()
    assert row is not None
    return tuple(row)


@dataclass
class World:
    sender: dict[str, str]  # the specialist who opened the case and sent the handoffs
    colleague: dict[str, str]  # another specialist of the 119, not working this case
    a: dict[str, str]  # the partner running the safe house
    b: dict[str, str]  # another partner, receiving an orientation
    a_org: uuid.UUID
    b_org: uuid.UUID
    house_service: str
    case_id: str
    to_house: str  # the 119's shelter request to the safe house
    to_b: str  # the 119's orientation to partner B


@pytest.fixture
async def world(client: httpx.AsyncClient, session: AsyncSession, auth) -> World:  # type: ignore[no-untyped-def]
    a = await factories.organisation(session, name="Foyer A")
    b = await factories.organisation(session, name="Asso B")
    house = await factories.location(
        session,
        a,
        lon=HOUSE[0],
        lat=HOUSE[1],
        commune=SAINT_FLOUR,
        visibility=Visibility.confidential,
        address=HOUSE_ADDRESS,
        front_door_phone="+33 1 99 00 00 01",
    )
    service = await factories.service(session, a, house, name="Mise à l'abri", specialisms=["emergency-shelter"])
    sender = auth("specialist", subject="specialiste-1")
    case = await factories.case(client, sender)
    to_house = await factories.handoff(
        client,
        sender,
        case_id=case["id"],
        kind="shelter_request",
        to_organisation_id=str(a.id),
        to_service_id=str(service.id),
    )
    to_b = await factories.handoff(client, sender, case_id=case["id"], to_organisation_id=str(b.id))
    return World(
        sender=sender,
        colleague=auth("specialist", subject="specialiste-2"),
        a=auth("partner", org=a.id, subject="foyer-a"),
        b=auth("partner", org=b.id, subject="asso-b"),
        a_org=a.id,
        b_org=b.id,
        house_service=str(service.id),
        case_id=case["id"],
        to_house=to_house["id"],
        to_b=to_b["id"],
    )


async def _place(client: httpx.AsyncClient, headers: dict[str, str], service_id: str) -> tuple[str, str | None]:
    """(location precision, address) of a service as this caller reads it."""
    response = await client.get(f"/v1/services/{service_id}", headers=headers)
    assert response.status_code == 200, response.text
    properties = response.json()["properties"]
    return properties["location_precision"], properties["address"]


async def _searched(client: httpx.AsyncClient, headers: dict[str, str], service_id: str) -> dict[str, object]:
    response = await client.get(
        "/v1/services/search",
        headers=headers,
        params={"commune": SAINT_FLOUR, "radius_km": 20, "specialism": "emergency-shelter"},
    )
    assert response.status_code == 200, response.text
    [feature] = [f for f in response.json()["features"] if f["id"] == service_id]
    return dict(feature)


# --- B3: the exact place of a safe house, for the specialists working the case only ----------------


async def test_only_the_sender_and_its_assignees_see_the_safe_house_exactly(
    client: httpx.AsyncClient,
    world: World,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    coarse = ("commune", None)
    # A request the safe house has not accepted shows its sender nothing more than anyone else.
    assert await _place(client, world.sender, world.house_service) == coarse
    await factories.move(client, world.a, world.to_house, "accepted")
    assert (await _place(client, world.sender, world.house_service))[1] == HOUSE_ADDRESS
    assert await _place(client, world.colleague, world.house_service) == coarse
    assert (await _searched(client, world.colleague, world.house_service))["properties"]["address"] is None
    sender_view = await _searched(client, world.sender, world.house_service)
    colleague_view = await _searched(client, world.colleague, world.house_service)
    assert sender_view["geometry"]["coordinates"] == pytest.approx(list(HOUSE), abs=1e-6)
    assert colleague_view["geometry"]["coordinates"] != pytest.approx(list(HOUSE), abs=1e-3)
    assert colleague_view["properties"]["distance_m"] % 1000 == 0

    # The sender adds the colleague: now the colleague works the case, and sees it exactly.
    url = f"/v1/handoffs/{world.to_house}/assignees"
    added = await client.put(url, headers=world.sender, json={"assignees": [{"subject": "specialiste-2"}]})
    assert added.status_code == 200, added.text
    assert [(a["subject"], a["added_by"]) for a in added.json()] == [("specialiste-2", "specialiste-1")]
    assert (await _place(client, world.colleague, world.house_service))[1] == HOUSE_ADDRESS
    listed = await client.get(url, headers=world.colleague)
    assert [a["subject"] for a in listed.json()] == ["specialiste-2"]

    # An assignee may edit the list too; once removed, back to the commune.
    removed = await client.put(url, headers=world.colleague, json={"assignees": []})
    assert removed.status_code == 200, removed.text
    assert removed.json() == []
    assert await _place(client, world.colleague, world.house_service) == coarse

    # Once the handoff is over, nobody of the 119 sees it exactly any more.
    await factories.move(client, world.a, world.to_house, "failed", reason_code="runaway")
    assert await _place(client, world.sender, world.house_service) == coarse


async def test_sending_a_request_is_not_a_way_to_learn_an_address(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    """A specialist not working the case opens a case of its own and asks the safe house: until the
    house accepts, the request shows nothing more."""
    own_case = await factories.case(client, world.colleague)
    probe = await factories.handoff(
        client,
        world.colleague,
        case_id=own_case["id"],
        kind="shelter_request",
        to_organisation_id=str(world.a_org),
        to_service_id=world.house_service,
    )
    assert await _place(client, world.colleague, world.house_service) == ("commune", None)
    assert (await _searched(client, world.colleague, world.house_service))["properties"]["address"] is None
    await factories.move(client, world.colleague, probe["id"], "cancelled")
    assert await _place(client, world.colleague, world.house_service) == ("commune", None)


async def test_each_exact_read_by_a_specialist_is_journalled(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    async def journal() -> list[tuple[str, str]]:
        rows = await (
            await reader.execute(
                """SELECT actor_subject, object_id::text FROM audit_event
                    WHERE action = 'location.exact.read' ORDER BY id"""
            )
        ).fetchall()
        return [(row[0], row[1]) for row in rows]

    house = await (
        await reader.execute("SELECT location_id::text FROM service WHERE id = %s", (world.house_service,))
    ).fetchone()
    assert house is not None
    assert await journal() == []
    await _place(client, world.colleague, world.house_service)  # commune only: nothing to journal
    await _searched(client, world.colleague, world.house_service)
    await _place(client, world.a, world.house_service)  # its owner
    assert await journal() == []
    await factories.move(client, world.a, world.to_house, "accepted")
    await _place(client, world.sender, world.house_service)
    await _searched(client, world.sender, world.house_service)
    assert await journal() == [("specialiste-1", house[0]), ("specialiste-1", house[0])]


async def test_specialists_not_working_the_case_cannot_add_themselves(
    client: httpx.AsyncClient,
    world: World,
    reader: AsyncConnection,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    url = f"/v1/handoffs/{world.to_house}/assignees"
    before = await _counts(reader)
    refused = await client.put(url, headers=world.colleague, json={"assignees": [{"subject": "specialiste-2"}]})
    assert refused.status_code == 403, refused.text
    assert refused.json()["code"] == "not_working_this_case"
    for partner in (world.a, world.b):
        assert (await client.put(url, headers=partner, json={"assignees": []})).status_code == 403
    for role in ("department", "admin"):
        assert (await client.get(url, headers=auth(role))).status_code == 403
    assert await _counts(reader) == before
    assert await _place(client, world.colleague, world.house_service) == ("commune", None)


async def test_assignees_bad_input(client: httpx.AsyncClient, world: World, reader: AsyncConnection) -> None:
    url = f"/v1/handoffs/{world.to_house}/assignees"
    before = await _counts(reader)
    for body, pointer in (
        ({"assignees": [{"subject": ""}]}, "/assignees/0/subject"),
        ({"assignees": [{"subject": "x", "role": "admin"}]}, "/assignees/0/role"),
        ({"assignees": [{"subject": "x"}, {"subject": "x"}]}, "/assignees"),
        ({}, "/assignees"),
    ):
        response = await client.put(url, headers=world.sender, json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["pointer"] == pointer
    missing = await client.put(f"/v1/handoffs/{uuid.uuid4()}/assignees", headers=world.sender, json={"assignees": []})
    assert missing.status_code == 404
    assert await _counts(reader) == before


# --- B6: a partner sees the case only while its handoff is under way -------------------------------


async def test_a_partner_whose_handoff_is_over_sees_nothing_more_and_cannot_act(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    case = f"/v1/cases/{world.case_id}"
    for suffix in ("", "/pathway", "/competent-crips"):
        assert (await client.get(case + suffix, headers=world.b)).status_code == 200
    await factories.move(client, world.b, world.to_b, "declined", reason_code="out_of_territory")
    nowhere = await client.get(f"/v1/cases/{uuid.uuid4()}", headers=world.b)
    for suffix in ("", "/pathway", "/competent-crips"):
        response = await client.get(case + suffix, headers=world.b)
        assert response.status_code == 404, suffix
        assert response.json()["detail"] == nowhere.json()["detail"]
    before = await _counts(reader)
    event = await client.post(f"{case}/events", headers=world.b, json={"kind": "runaway_started"})
    assert event.status_code == 404
    handoff = await factories.post_handoff(client, world.b, case_id=world.case_id, to_organisation_id=str(world.a_org))
    assert handoff.status_code == 422
    assert handoff.json()["errors"][0]["pointer"] == "/case_id"
    assert await _counts(reader) == before
    # Its own handoff stays readable: it is its record of what it was asked and answered.
    own = await client.get(f"/v1/handoffs/{world.to_b}", headers=world.b)
    assert own.status_code == 200
    assert own.json()["status"] == "declined"


@pytest.mark.parametrize("end", ["cancelled", "completed", "expired"])
async def test_every_way_a_handoff_ends_closes_the_case_to_its_partner(
    client: httpx.AsyncClient, world: World, session: AsyncSession, end: str
) -> None:
    if end == "cancelled":
        await factories.move(client, world.sender, world.to_b, "cancelled")
    elif end == "completed":
        for step in ("accepted", "in_progress", "completed"):
            await factories.move(client, world.b, world.to_b, step)
    else:
        connection = await session.connection()
        await connection.exec_driver_sql(
            "UPDATE handoff SET status = 'expired', closed_at = now() WHERE id = %(id)s", {"id": world.to_b}
        )
    assert (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.b)).status_code == 404


async def test_the_119s_notes_never_reach_partners(client: httpx.AsyncClient, world: World) -> None:
    events = f"/v1/cases/{world.case_id}/events"
    runaway = {"kind": "runaway_started", "note": "vue près de la gare par sa tante"}
    assert (await client.post(events, headers=world.sender, json=runaway)).status_code == 201
    assert (
        await client.post(events, headers=world.sender, json={"kind": "note", "note": "mère injoignable"})
    ).status_code == 201
    assert (
        await client.post(events, headers=world.b, json={"kind": "note", "note": "rendez-vous pris"})
    ).status_code == 201
    await factories.move(client, world.sender, world.to_house, "cancelled", reason="famille relogée ailleurs")

    seen_by_b = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.b)).json()
    notes = [(item["kind"], item["note"]) for item in seen_by_b if item["type"] == "event"]
    assert notes == [("runaway_started", None), ("note", "rendez-vous pris")]
    assert "gare" not in str(seen_by_b)
    assert "injoignable" not in str(seen_by_b)
    assert all(item.get("handoff_id") != world.to_house for item in seen_by_b)

    seen_by_119 = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.sender)).json()
    assert [(i["kind"], i["note"]) for i in seen_by_119 if i["type"] == "event"] == [
        ("runaway_started", runaway["note"]),
        ("note", "mère injoignable"),
        ("note", "rendez-vous pris"),
    ]
    cancelled = [i for i in seen_by_119 if i["type"] == "handoff_moved" and i["to"] == "cancelled"]
    assert [i["reason"] for i in cancelled] == ["famille relogée ailleurs"]


async def test_a_partner_never_learns_which_other_partner_recorded_an_event(
    client: httpx.AsyncClient, world: World
) -> None:
    """Partner A (the safe house) records a placement; partner B, on the same case, must not learn
    that A made it: the kind of event and its author together would say where the child is."""
    events = f"/v1/cases/{world.case_id}/events"
    assert (await client.post(events, headers=world.a, json={"kind": "placement"})).status_code == 201
    assert (await client.post(events, headers=world.sender, json={"kind": "runaway_ended"})).status_code == 201
    seen_by_b = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.b)).json()
    [placement] = [i for i in seen_by_b if i["type"] == "event" and i["kind"] == "placement"]
    assert placement["by"] == {"role": "partner", "organisation_id": None}
    assert str(world.a_org) not in str(seen_by_b)
    [returned] = [i for i in seen_by_b if i["type"] == "event" and i["kind"] == "runaway_ended"]
    assert returned["by"]["organisation_id"] is not None  # the 119, which sent B its handoff
    seen_by_a = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.a)).json()
    [own] = [i for i in seen_by_a if i["type"] == "event" and i["kind"] == "placement"]
    assert own["by"]["organisation_id"] == str(world.a_org)
    seen_by_119 = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.sender)).json()
    [placed] = [i for i in seen_by_119 if i["type"] == "event" and i["kind"] == "placement"]
    assert placed["by"]["organisation_id"] == str(world.a_org)

    # B guesses A: a throwaway handoff to A, withdrawn at once, does not make A's events A's to B.
    guess = await factories.handoff(client, world.b, case_id=world.case_id, to_organisation_id=str(world.a_org))
    await factories.move(client, world.b, guess["id"], "entered_in_error")
    again = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.b)).json()
    [placement] = [i for i in again if i["type"] == "event" and i["kind"] == "placement"]
    assert placement["by"] == {"role": "partner", "organisation_id": None}


async def test_a_partner_whose_part_is_over_moves_nothing_more(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    """B accepts, hands the case on to A, then both handoffs end: B can no longer mark A's handoff
    entered in error (that would write on the pathway and change the statistics)."""
    await factories.move(client, world.b, world.to_b, "accepted")
    onward = await factories.handoff(client, world.b, case_id=world.case_id, to_organisation_id=str(world.a_org))
    for step in ("accepted", "in_progress", "completed"):
        await factories.move(client, world.a, onward["id"], step)
    for step in ("in_progress", "completed"):
        await factories.move(client, world.b, world.to_b, step)
    before = await _counts(reader)
    refused = await client.post(
        f"/v1/handoffs/{onward['id']}/transitions", headers=world.b, json={"to": "entered_in_error"}
    )
    assert refused.status_code == 409, refused.text
    assert refused.json()["allowed"] == []
    assert await _counts(reader) == before
    assert (await client.get(f"/v1/handoffs/{onward['id']}", headers=world.b)).json()["status"] == "completed"


async def test_a_partner_never_reads_the_119s_reason_on_its_own_handoff(
    client: httpx.AsyncClient, world: World
) -> None:
    await factories.move(client, world.b, world.to_b, "accepted")
    other = await factories.handoff(client, world.sender, case_id=world.case_id, to_organisation_id=str(world.b_org))
    await factories.move(client, world.sender, other["id"], "cancelled", reason="doublon de la précédente")
    pathway = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.b)).json()
    [moved] = [i for i in pathway if i["type"] == "handoff_moved" and i["to"] == "cancelled"]
    assert moved["reason"] is None


# --- B7: Idempotency-Key belongs to the whole principal ---------------------------------------------


async def test_a_partner_sharing_a_specialists_subject_never_replays_its_response(
    client: httpx.AsyncClient,
    world: World,
    reader: AsyncConnection,
    auth,  # type: ignore[no-untyped-def]
) -> None:
    body = {
        "case_id": world.case_id,
        "to_organisation_id": str(world.a_org),
        "kind": "orientation",
        "beneficiary": "minor",
        "urgency": "routine",
        "legal_basis": "consent",
    }
    key = {"Idempotency-Key": "shared-key-1"}
    first = await client.post("/v1/handoffs", headers={**world.sender, **key}, json=body)
    assert first.status_code == 201, first.text
    before = await _counts(reader)
    impostor = auth("partner", org=world.a_org, subject="specialiste-1")
    replay = await client.post("/v1/handoffs", headers={**impostor, **key}, json=body)
    # Partner A sending to itself: an ordinary refusal, not the specialist's stored answer.
    assert replay.status_code == 422, replay.text
    assert replay.json()["errors"][0]["pointer"] == "/to_organisation_id"
    assert first.json()["id"] not in replay.text
    assert await _counts(reader) == before
    # The same key with another body is that partner's own first use, not "already used".
    own = await client.post(
        "/v1/handoffs", headers={**impostor, **key}, json={**body, "to_organisation_id": str(world.b_org)}
    )
    assert own.status_code == 201, own.text
    assert own.json()["id"] != first.json()["id"]
