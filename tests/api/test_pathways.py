"""Cases, handoffs, transitions, pathway events, scope and audit (in the test's transaction).

Concurrency, idempotency races and the crash test need committed data: tests/test_concurrency.py and
tests/test_crash.py.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from psycopg import AsyncConnection
from sqlmodel.ext.asyncio.session import AsyncSession

from directory import handoffs as handoff_domain
from directory.pathway_models import HandoffStatus
from tests import factories

PATHWAY_ROUTES = {
    ("POST", "/v1/cases"),
    ("GET", "/v1/cases/{case_id}"),
    ("PATCH", "/v1/cases/{case_id}"),
    ("POST", "/v1/cases/{case_id}/close"),
    ("GET", "/v1/cases/{case_id}/competent-crips"),
    ("GET", "/v1/cases/{case_id}/pathway"),
    ("POST", "/v1/cases/{case_id}/events"),
    ("POST", "/v1/handoffs"),
    ("GET", "/v1/handoffs"),
    ("GET", "/v1/handoffs/{handoff_id}"),
    ("POST", "/v1/handoffs/{handoff_id}/transitions"),
    ("GET", "/v1/handoffs/{handoff_id}/assignees"),
    ("PUT", "/v1/handoffs/{handoff_id}/assignees"),
    ("POST", "/v1/webhook-subscriptions"),
    ("GET", "/v1/webhook-subscriptions"),
    ("DELETE", "/v1/webhook-subscriptions/{subscription_id}"),
    ("GET", "/v1/webhook-subscriptions/{subscription_id}/deliveries"),
    ("GET", "/v1/audit"),
}

CASE = factories.CASE


@dataclass
class World:
    specialist: dict[str, str]
    a: dict[str, str]  # partner A: receives the 119's orientation
    b: dict[str, str]  # partner B: a stranger to this case
    a_org: uuid.UUID
    b_org: uuid.UUID
    case_id: str
    handoff_id: str


async def _counts(reader: AsyncConnection) -> tuple[int, ...]:
    row = await (
        await reader.execute(
            """SELECT (SELECT count(*) FROM case_record), (SELECT count(*) FROM handoff),
                  (SELECT count(*) FROM handoff_event), (SELECT count(*) FROM case_event),
                  (SELECT count(*) FROM outbox_event)"""
        )
    ).fetchone()
    return tuple(row)


_handoff = factories.post_handoff


@pytest.fixture
async def world(client: httpx.AsyncClient, session: AsyncSession, auth) -> World:  # type: ignore[no-untyped-def]
    org_a = await factories.organisation(session, name="Asso A")
    org_b = await factories.organisation(session, name="Asso B")
    specialist = auth("specialist", subject="specialiste-1")
    case = await client.post("/v1/cases", headers=specialist, json=CASE)
    assert case.status_code == 201, case.text
    handoff = await _handoff(client, specialist, case_id=case.json()["id"], to_organisation_id=str(org_a.id))
    assert handoff.status_code == 201, handoff.text
    return World(
        specialist,
        auth("partner", org=org_a.id, subject="asso-a"),
        auth("partner", org=org_b.id, subject="asso-b"),
        org_a.id,
        org_b.id,
        case.json()["id"],
        handoff.json()["id"],
    )


# --- cases ---------------------------------------------------------------------------------------


async def test_a_case_is_pseudonymous(client: httpx.AsyncClient, world: World) -> None:
    body = (await client.get(f"/v1/cases/{world.case_id}", headers=world.specialist)).json()
    assert body["reference"][4] == "-"
    assert len(body["reference"]) == 9
    assert body["residence_collectivite"] == {"code": "93D", "name": "Département de la Seine-Saint-Denis"}
    assert body["found_in_commune"] == {"code": "75056", "name": "Paris"}
    assert (body["age"], body["needs"], body["status"]) == (15, ["emergency-shelter", "legal-support"], "open")
    assert not {"name", "first_name", "birth_date", "address", "phone"} & set(body)


@pytest.mark.parametrize(
    ("extra", "pointer"),
    [
        ({"name": "Léa"}, "/name"),
        ({"birth_date": "2011-01-01"}, "/birth_date"),
        ({"address": "1 rue"}, "/address"),
        ({"phone": "0600000000"}, "/phone"),
        ({"age": 26}, "/age"),
        ({"age": "15"}, "/age"),
        ({"residence_collectivite": "99D"}, "/residence_collectivite"),
        ({"found_in_commune": "99999"}, "/found_in_commune"),
        ({"needs": ["sorcery"]}, "/needs/0"),
        ({"safe_contact": "x" * 201}, "/safe_contact"),
        ({"intake_channel": "pigeon"}, "/intake_channel"),
        ({"status": "closed"}, "/status"),
        ({"reference": "AAAA-AAAA"}, "/reference"),
    ],
)
async def test_case_bodies_hold_no_identity_and_are_checked(
    client: httpx.AsyncClient, specialist: dict[str, str], reader: AsyncConnection, extra: dict[str, Any], pointer: str
) -> None:
    before = await _counts(reader)
    response = await client.post("/v1/cases", headers=specialist, json={**CASE, **extra})
    assert response.status_code == 422, response.text
    assert any((e.get("pointer") or "").startswith(pointer) for e in response.json()["errors"])
    assert await _counts(reader) == before


@pytest.mark.parametrize("role", ["partner", "department", "admin"])
async def test_only_specialists_open_cases(client: httpx.AsyncClient, auth, reader: AsyncConnection, role: str) -> None:  # type: ignore[no-untyped-def]
    before = await _counts(reader)
    response = await client.post("/v1/cases", headers=auth(role), json=CASE)
    assert response.status_code == 403
    assert await _counts(reader) == before
    audit = await (
        await reader.execute("SELECT action, outcome, status_code FROM audit_event ORDER BY id DESC LIMIT 1")
    ).fetchone()
    assert tuple(audit) == ("case.create", "denied", 403)


async def test_a_partner_sees_only_what_its_handoffs_need(client: httpx.AsyncClient, world: World) -> None:
    body = (await client.get(f"/v1/cases/{world.case_id}", headers=world.a)).json()
    assert set(body) == {
        "id",
        "reference",
        "age",
        "needs",
        "do_not_contact_minor_directly",
        "do_not_contact_parents",
        "safe_contact",
        "status",
        "version",
        "handoffs",
    }
    assert [h["id"] for h in body["handoffs"]] == [world.handoff_id]


async def test_strangers_departments_and_admins_read_no_case(client: httpx.AsyncClient, world: World, auth) -> None:  # type: ignore[no-untyped-def]
    for suffix in ("", "/pathway", "/competent-crips"):
        assert (await client.get(f"/v1/cases/{world.case_id}{suffix}", headers=world.b)).status_code == 404
        for role in ("department", "admin"):
            assert (await client.get(f"/v1/cases/{world.case_id}{suffix}", headers=auth(role))).status_code == 403
    missing = await client.get(f"/v1/cases/{uuid.uuid4()}", headers=world.b)
    hidden = await client.get(f"/v1/cases/{world.case_id}", headers=world.b)
    assert missing.json() == hidden.json()  # not yours and does not exist: the same answer


async def test_patch_a_case_and_its_handoffs_follow_the_residence(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    url = f"/v1/cases/{world.case_id}"
    tag = (await client.get(url, headers=world.specialist)).headers["etag"]
    assert (await client.patch(url, headers=world.specialist, json={"age": 16})).status_code == 428
    moved = await client.patch(
        url, headers={**world.specialist, "If-Match": tag}, json={"residence_collectivite": "69M", "safe_contact": None}
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["residence_collectivite"]["code"] == "69M"
    rows = await (
        await reader.execute(
            "SELECT DISTINCT collectivite_code FROM handoff_event WHERE case_id = %s", (world.case_id,)
        )
    ).fetchall()
    assert [r[0] for r in rows] == ["69M"]
    stale = await client.patch(url, headers={**world.specialist, "If-Match": tag}, json={"age": 16})
    assert stale.status_code == 412


async def test_competent_crips(client: httpx.AsyncClient, world: World, specialist: dict[str, str]) -> None:
    crips = (await client.get(f"/v1/cases/{world.case_id}/competent-crips", headers=world.specialist)).json()
    assert [(c["reason"], c["collectivite"]["code"]) for c in crips] == [("residence", "93D"), ("found_in", "75C")]
    assert crips[0]["crip"]["contact_state"] == "missing"
    same = await client.post("/v1/cases", headers=specialist, json={**CASE, "found_in_commune": "93008"})
    only = (await client.get(f"/v1/cases/{same.json()['id']}/competent-crips", headers=specialist)).json()
    assert [c["reason"] for c in only] == ["residence"]


# --- handoffs ------------------------------------------------------------------------------------


async def test_an_information_preoccupante_goes_to_the_competent_crip(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    response = await _handoff(
        client, world.specialist, case_id=world.case_id, kind="information_preoccupante", urgency="immediate"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    crip = await (
        await reader.execute("SELECT id FROM organisation WHERE kind = 'crip' AND collectivite_code = '93D'")
    ).fetchone()
    assert body["receiver"]["id"] == str(crip[0])
    assert body["sender"]["name"].startswith("119")
    assert body["status"] == "sent"
    created = datetime.fromisoformat(body["created_at"])
    assert datetime.fromisoformat(body["acknowledge_by"]) - created == timedelta(hours=1)


@pytest.mark.parametrize(
    ("body", "pointer"),
    [
        ({"kind": "orientation"}, "/to_organisation_id"),
        ({"to_organisation_id": str(uuid.uuid4())}, "/to_organisation_id"),
        ({"case_id": str(uuid.uuid4())}, "/case_id"),
        ({"urgency": "whenever"}, "/urgency"),
        ({"legal_basis": None}, "/legal_basis"),
        ({"to_service_id": str(uuid.uuid4())}, "/to_service_id"),
    ],
)
async def test_bad_handoffs(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, body: dict[str, Any], pointer: str
) -> None:
    payload: dict[str, Any] = {"case_id": world.case_id, "to_organisation_id": str(world.a_org), **body}
    if body == {"kind": "orientation"}:
        payload.pop("to_organisation_id")
    before = await _counts(reader)
    response = await _handoff(client, world.specialist, **payload)
    assert response.status_code == 422, response.text
    assert any((e.get("pointer") or "").startswith(pointer) for e in response.json()["errors"])
    assert await _counts(reader) == before


async def test_idempotency_key(client: httpx.AsyncClient, world: World, reader: AsyncConnection) -> None:
    body = {
        "case_id": world.case_id,
        "to_organisation_id": str(world.a_org),
        "kind": "shelter_request",
        "beneficiary": "minor",
        "urgency": "routine",
        "legal_basis": "consent",
    }
    missing = await client.post("/v1/handoffs", headers=world.specialist, json=body)
    assert missing.status_code == 400
    assert missing.json()["errors"][0]["name"] == "Idempotency-Key"
    headers = {**world.specialist, "Idempotency-Key": "retry-me-1"}
    first = await client.post("/v1/handoffs", headers=headers, json=body)
    before = await _counts(reader)
    again = await client.post("/v1/handoffs", headers=headers, json=body)
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert await _counts(reader) == before
    other = await client.post("/v1/handoffs", headers=headers, json={**body, "urgency": "immediate"})
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    # Keys belong to their subject: another caller may reuse the same string.
    mine = await client.post(
        "/v1/handoffs",
        headers={**world.a, "Idempotency-Key": "retry-me-1"},
        json={**body, "to_organisation_id": str(world.b_org)},
    )
    assert mine.status_code == 201


# The machine, written out by hand: from each status, the moves open to the receiver and to the sender,
# in the order the API lists them. `expired` is the system's move; `entered_in_error` the sender's
# correction from every status.
EXPECTED_MOVES: dict[str, dict[str, list[str]]] = {
    "sent": {"receiver": ["acknowledged", "accepted", "declined"], "sender": ["cancelled", "entered_in_error"]},
    "acknowledged": {"receiver": ["accepted", "declined"], "sender": ["cancelled", "entered_in_error"]},
    "accepted": {"receiver": ["in_progress", "on_hold", "failed"], "sender": ["cancelled", "entered_in_error"]},
    "in_progress": {"receiver": ["on_hold", "completed", "failed"], "sender": ["entered_in_error"]},
    "on_hold": {"receiver": ["in_progress", "failed"], "sender": ["cancelled", "entered_in_error"]},
}
PATHS = {
    "sent": [],
    "acknowledged": ["acknowledged"],
    "accepted": ["accepted"],
    "in_progress": ["accepted", "in_progress"],
    "on_hold": ["accepted", "on_hold"],
}
REASONS = {"declined": "no_capacity", "failed": "runaway"}


def _move(to: str) -> dict[str, Any]:
    return {"to": to, "reason_code": REASONS.get(to), "reason": "essai"}


def test_the_machine_is_the_one_written_out() -> None:
    for start, sides in EXPECTED_MOVES.items():
        for side, moves in sides.items():
            assert handoff_domain.allowed_moves(HandoffStatus(start), {side}) == moves, (start, side)
    terminal = {"declined", "completed", "failed", "cancelled", "expired"}
    for status in terminal:
        assert handoff_domain.allowed_moves(HandoffStatus(status), {"receiver"}) == []
        assert handoff_domain.allowed_moves(HandoffStatus(status), {"sender"}) == ["entered_in_error"]
    assert handoff_domain.allowed_moves(HandoffStatus.sent, {"system"}) == ["expired"]


@pytest.mark.parametrize("start", list(EXPECTED_MOVES))
async def test_every_edge_and_non_edge_of_the_machine(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, start: str
) -> None:
    actors = {"sender": world.specialist, "receiver": world.a}
    for target in [status.value for status in HandoffStatus]:
        created = await _handoff(client, world.specialist, case_id=world.case_id, to_organisation_id=str(world.a_org))
        url = f"/v1/handoffs/{created.json()['id']}/transitions"
        for step in PATHS[start]:
            assert (await client.post(url, headers=world.a, json=_move(step))).status_code == 200
        for side, headers in actors.items():
            before = await _counts(reader)
            response = await client.post(url, headers=headers, json=_move(target))
            if target in EXPECTED_MOVES[start][side]:
                assert response.status_code == 200, (start, target, side, response.text)
                assert response.json()["status"] == target
                event = await (
                    await reader.execute(
                        "SELECT from_status, to_status FROM handoff_event WHERE handoff_id = %s "
                        "ORDER BY id DESC LIMIT 1",
                        (created.json()["id"],),
                    )
                ).fetchone()
                assert tuple(event) == (start, target)
                break
            assert response.status_code == 409, (start, target, side, response.text)
            problem = response.json()
            assert problem["current_status"] == start
            assert problem["allowed"] == EXPECTED_MOVES[start][side]
            assert await _counts(reader) == before


@pytest.mark.parametrize(
    ("move", "pointer"),
    [
        ({"to": "declined"}, "/reason_code"),
        ({"to": "declined", "reason_code": "runaway"}, "/reason_code"),
        ({"to": "declined", "reason_code": "other"}, "/reason"),
        ({"to": "accepted", "reason_code": "no_capacity"}, "/reason_code"),
        ({"to": "teleported"}, "/to"),
        ({"to": "accepted", "status": "x"}, "/status"),
    ],
)
async def test_negative_moves_need_a_reason(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, move: dict[str, Any], pointer: str
) -> None:
    before = await _counts(reader)
    response = await client.post(f"/v1/handoffs/{world.handoff_id}/transitions", headers=world.a, json=move)
    assert response.status_code == 422, response.text
    assert any((e.get("pointer") or "").startswith(pointer) for e in response.json()["errors"])
    assert await _counts(reader) == before


async def test_a_move_based_on_a_stale_view_is_refused(client: httpx.AsyncClient, world: World) -> None:
    url = f"/v1/handoffs/{world.handoff_id}/transitions"
    assert (await client.post(url, headers=world.a, json={"to": "accepted", "from": "sent"})).status_code == 200
    late = await client.post(url, headers=world.specialist, json={"to": "cancelled", "from": "sent"})
    assert late.status_code == 409
    assert late.json()["current_status"] == "accepted"
    # Without `from`, cancelling an accepted handoff is a legal move of the sender.
    assert (await client.post(url, headers=world.specialist, json={"to": "cancelled"})).status_code == 200


async def test_inbox_outbox_and_filters(client: httpx.AsyncClient, world: World) -> None:
    from_a = await _handoff(
        client, world.a, case_id=world.case_id, to_organisation_id=str(world.b_org), urgency="immediate"
    )
    assert from_a.status_code == 201, from_a.text
    inbox = (await client.get("/v1/handoffs", params={"box": "inbox"}, headers=world.a)).json()["items"]
    outbox = (await client.get("/v1/handoffs", params={"box": "outbox"}, headers=world.a)).json()["items"]
    assert [h["id"] for h in inbox] == [world.handoff_id]
    assert [h["id"] for h in outbox] == [from_a.json()["id"]]
    b_sees = (await client.get("/v1/handoffs", headers=world.b)).json()["items"]
    assert [h["id"] for h in b_sees] == [from_a.json()["id"]]  # never the 119 → A handoff
    urgent = (await client.get("/v1/handoffs", params={"urgency": "immediate"}, headers=world.specialist)).json()
    assert from_a.json()["id"] in [h["id"] for h in urgent["items"]]
    assert all(h["urgency"] == "immediate" for h in urgent["items"])


async def test_partner_b_never_sees_the_119_to_a_handoff(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection
) -> None:
    handoff_url = f"/v1/handoffs/{world.handoff_id}"
    before = await _counts(reader)
    assert (await client.get(handoff_url, headers=world.b)).status_code == 404
    moved = await client.post(f"{handoff_url}/transitions", headers=world.b, json={"to": "accepted"})
    assert moved.status_code == 404
    assert moved.json() == (await client.get(f"/v1/handoffs/{uuid.uuid4()}", headers=world.b)).json() | {
        "detail": moved.json()["detail"]
    }
    listed = (await client.get("/v1/handoffs", params={"limit": 100}, headers=world.b)).json()["items"]
    assert world.handoff_id not in [h["id"] for h in listed]
    handoff_on_case = await _handoff(client, world.b, case_id=world.case_id, to_organisation_id=str(world.a_org))
    assert handoff_on_case.status_code == 422  # no such case, for B
    assert await _counts(reader) == before


async def test_departments_and_admins_handle_no_handoff(client: httpx.AsyncClient, world: World, auth) -> None:  # type: ignore[no-untyped-def]
    for role in ("department", "admin"):
        headers = auth(role)
        assert (await client.get("/v1/handoffs", headers=headers)).status_code == 403
        assert (await client.get(f"/v1/handoffs/{world.handoff_id}", headers=headers)).status_code == 403


# --- pathway events and their notifications -----------------------------------------------------------


async def test_pathway_and_runaway_notifications(
    client: httpx.AsyncClient, world: World, session: AsyncSession, reader: AsyncConnection, app
) -> None:  # type: ignore[no-untyped-def]
    from sync import subscriptions

    for org, url in ((world.a_org, "https://a.example/hook"), (world.b_org, "https://b.example/hook")):
        await subscriptions.create(
            session,
            organisation_id=org,
            url=url,
            event_types=["case.runaway_started"],
            created_by="t",
            box=app.state.secret_box,
            resolve=_public,
            allow_loopback=False,
        )
    assert (
        await client.post(f"/v1/handoffs/{world.handoff_id}/transitions", headers=world.a, json={"to": "accepted"})
    ).status_code == 200
    runaway = await client.post(
        f"/v1/cases/{world.case_id}/events", headers=world.specialist, json={"kind": "runaway_started"}
    )
    assert runaway.status_code == 201, runaway.text
    note = await client.post(
        f"/v1/cases/{world.case_id}/events", headers=world.specialist, json={"kind": "note", "note": "appel du père"}
    )
    assert note.status_code == 201
    deliveries = await (
        await reader.execute(
            """SELECT s.url, e.payload FROM webhook_delivery d JOIN webhook_subscription s ON s.id = d.subscription_id
             JOIN outbox_event e ON e.id = d.outbox_event_id WHERE e.type = 'case.runaway_started'"""
        )
    ).fetchall()
    assert [(r[0], r[1]["case_id"]) for r in deliveries] == [("https://a.example/hook", world.case_id)]
    timeline = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.specialist)).json()
    assert [(i["type"], i.get("to") or i.get("kind")) for i in timeline] == [
        ("handoff_created", "sent"),
        ("handoff_moved", "accepted"),
        ("event", "runaway_started"),
        ("event", "note"),
    ]
    partner_view = (await client.get(f"/v1/cases/{world.case_id}/pathway", headers=world.a)).json()
    assert "note" not in [i.get("kind") for i in partner_view if i["type"] == "event"]


async def _public(host: str, port: int) -> list[str]:
    return ["93.184.215.14"]


# --- expiry ---------------------------------------------------------------------------------------


async def test_overdue_then_expired(client: httpx.AsyncClient, world: World, session: AsyncSession) -> None:
    handoff_id = uuid.UUID(world.handoff_id)
    created = (await client.get(f"/v1/handoffs/{handoff_id}", headers=world.specialist)).json()
    deadline = datetime.fromisoformat(created["acknowledge_by"])
    overdue, expired = await handoff_domain.expire_overdue(
        session, now=deadline + timedelta(minutes=1), grace=timedelta(hours=72)
    )
    assert ([h.id for h in overdue], expired) == ([handoff_id], [])
    again = await handoff_domain.expire_overdue(session, now=deadline + timedelta(minutes=2), grace=timedelta(hours=72))
    assert again == ([], [])
    _, expired = await handoff_domain.expire_overdue(
        session, now=deadline + timedelta(hours=73), grace=timedelta(hours=72)
    )
    assert [h.id for h in expired] == [handoff_id]
    body = (await client.get(f"/v1/handoffs/{handoff_id}", headers=world.specialist)).json()
    assert body["status"] == "expired"
    assert await handoff_domain.expire_overdue(
        session, now=deadline + timedelta(hours=74), grace=timedelta(hours=72)
    ) == ([], [])


# --- audit ----------------------------------------------------------------------------------------


async def test_every_read_and_write_is_journalled(
    client: httpx.AsyncClient, world: World, reader: AsyncConnection, auth
) -> None:  # type: ignore[no-untyped-def]
    await client.get(f"/v1/cases/{world.case_id}", headers=world.a)
    await client.get(f"/v1/cases/{world.case_id}", headers=world.b)
    await client.get(f"/v1/cases/{world.case_id}", headers=auth("department"))
    await client.get(f"/v1/cases/{world.case_id}")
    rows = await (
        await reader.execute(
            """SELECT action, actor_subject, outcome, status_code, object_id::text FROM audit_event
            WHERE object_id = %s OR case_id = %s ORDER BY id""",
            (world.case_id, world.case_id),
        )
    ).fetchall()
    trail = [tuple(r[:4]) for r in rows]
    assert trail[:2] == [
        ("case.create", "specialiste-1", "allowed", 201),
        ("handoff.create", "specialiste-1", "allowed", 201),
    ]
    assert trail[-4:] == [
        ("case.read", "asso-a", "allowed", 200),
        ("case.read", "asso-b", "not_found", 404),
        ("case.read", "test-user", "denied", 403),
        ("case.read", "anonymous", "denied", 401),
    ]
    listing = (
        await client.get("/v1/audit", params={"case_id": world.case_id, "limit": 2}, headers=auth("admin"))
    ).json()
    assert [i["action"] for i in listing["items"]] == ["case.read", "case.read"]
    assert listing["links"][0]["rel"] == "next"
    assert (await client.get("/v1/audit", headers=world.specialist)).status_code == 403


async def test_the_application_role_cannot_alter_the_journal(reader: AsyncConnection, world: World) -> None:
    for statement in (
        "UPDATE audit_event SET outcome = 'allowed'",
        "DELETE FROM audit_event",
        "UPDATE handoff_event SET to_status = 'completed'",
        "DELETE FROM case_record",
        "UPDATE commune SET name = 'x'",
        "TRUNCATE audit_event",
    ):
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            async with reader.transaction():
                await reader.execute(statement)
