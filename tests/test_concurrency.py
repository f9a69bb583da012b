"""Races on a real database: optimistic concurrency holds when writers truly run at once."""

import asyncio

import httpx
from fastapi import FastAPI

from directory.access import Role


async def test_fifty_racing_patches_with_one_etag_make_exactly_one_change(
    live: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = live
    admin = {"Authorization": "Bearer " + app.state.tokens.issue(subject="admin", role=Role.admin)}
    org = await client.post("/v1/organisations", headers=admin, json={"name": "Asso course", "kind": "association"})
    assert org.status_code == 201, org.text
    partner = {
        "Authorization": "Bearer "
        + app.state.tokens.issue(subject="asso", role=Role.partner, organisation_id=org.json()["id"])
    }
    service = await client.post("/v1/services", headers=partner, json={"name": "Départ", "specialisms": ["outreach"]})
    assert service.status_code == 201, service.text
    url = f"/v1/services/{service.json()['id']}"
    tag = service.headers["etag"]

    async def write(i: int) -> httpx.Response:
        return await client.patch(url, headers={**partner, "If-Match": tag}, json={"name": f"Écrivain {i}"})

    responses = await asyncio.gather(*(write(i) for i in range(50)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 49
    winner = next(r for r in responses if r.status_code == 200).json()["properties"]["name"]
    stored = (await client.get(url, headers=partner)).json()["properties"]["name"]
    assert stored == winner
    updates = [
        item
        for item in (await client.get(f"{url}/history", headers=partner)).json()["items"]
        if item["action"] == "update"
    ]
    assert len(updates) == 1
    assert updates[0]["changes"]["name"] == {"old": "Départ", "new": winner}


async def _pathway(app: FastAPI, client: httpx.AsyncClient) -> tuple[dict[str, str], dict[str, str], str, str]:
    """A case, a partner and one handoff from the 119 to it, committed."""
    admin = {"Authorization": "Bearer " + app.state.tokens.issue(subject="admin", role=Role.admin)}
    specialist = {"Authorization": "Bearer " + app.state.tokens.issue(subject="specialiste", role=Role.specialist)}
    org = await client.post("/v1/organisations", headers=admin, json={"name": "Asso pathway", "kind": "association"})
    partner = {
        "Authorization": "Bearer "
        + app.state.tokens.issue(subject="asso", role=Role.partner, organisation_id=org.json()["id"])
    }
    case = await client.post(
        "/v1/cases",
        headers=specialist,
        json={"age": 14, "residence_collectivite": "93D", "intake_channel": "phone", "caller": "relative"},
    )
    assert case.status_code == 201, case.text
    handoff = await client.post(
        "/v1/handoffs",
        headers={**specialist, "Idempotency-Key": "setup"},
        json={
            "case_id": case.json()["id"],
            "kind": "orientation",
            "to_organisation_id": org.json()["id"],
            "beneficiary": "minor",
            "urgency": "immediate",
            "legal_basis": "child_protection_duty",
        },
    )
    assert handoff.status_code == 201, handoff.text
    return specialist, partner, case.json()["id"], handoff.json()["id"]


async def test_fifty_conflicting_transitions_one_wins(live: tuple[FastAPI, httpx.AsyncClient]) -> None:
    app, client = live
    specialist, partner, _, handoff_id = await _pathway(app, client)
    url = f"/v1/handoffs/{handoff_id}/transitions"
    moves = [
        (partner, {"to": "accepted", "from": "sent"}),
        (partner, {"to": "declined", "reason_code": "no_capacity", "from": "sent"}),
        (specialist, {"to": "cancelled", "from": "sent"}),
    ]
    responses = await asyncio.gather(
        *(client.post(url, headers=moves[i % 3][0], json=moves[i % 3][1]) for i in range(51))
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * 50, [r.text for r in responses if r.status_code not in (200, 409)]
    winner = next(r for r in responses if r.status_code == 200).json()["status"]
    assert all(r.json()["current_status"] == winner for r in responses if r.status_code == 409)
    async with app.state.reader.connection() as conn:
        events = await (
            await conn.execute(
                "SELECT from_status, to_status FROM handoff_event WHERE handoff_id = %s AND from_status IS NOT NULL",
                (handoff_id,),
            )
        ).fetchall()
    assert [tuple(e) for e in events] == [("sent", winner)]


async def test_twenty_identical_creations_with_one_key_make_one_handoff(
    live: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    app, client = live
    specialist, _, case_id, _ = await _pathway(app, client)
    headers = {**specialist, "Idempotency-Key": "same-key-20"}
    body = {
        "case_id": case_id,
        "kind": "information_preoccupante",
        "beneficiary": "minor",
        "urgency": "immediate",
        "legal_basis": "child_protection_duty",
        "reason": "fugues répétées",
    }
    responses = await asyncio.gather(*(client.post("/v1/handoffs", headers=headers, json=body) for _ in range(20)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.text for r in responses}) == 1
    assert len({r.headers["location"] for r in responses}) == 1
    async with app.state.reader.connection() as conn:
        count = await (
            await conn.execute(
                "SELECT count(*) FROM handoff WHERE case_id = %s AND kind = 'information_preoccupante'", (case_id,)
            )
        ).fetchone()
    assert count == (1,)


async def test_writers_on_one_service_s_areas_and_location_queue_without_deadlock(
    live: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """Two areas of one service and its location changed at once, round after round: each write redraws
    the service's coverage, and none may fail because the others hold rows it needs (a deadlock
    answered 503) — they queue, and all apply."""
    app, client = live
    admin = {"Authorization": "Bearer " + app.state.tokens.issue(subject="admin", role=Role.admin)}
    org = await client.post("/v1/organisations", headers=admin, json={"name": "Asso zones", "kind": "association"})
    assert org.status_code == 201, org.text
    partner = {
        "Authorization": "Bearer "
        + app.state.tokens.issue(subject="asso", role=Role.partner, organisation_id=org.json()["id"])
    }
    location = await client.post(
        "/v1/locations",
        headers=partner,
        json={"commune_code": "69123", "point": {"type": "Point", "coordinates": [4.8357, 45.764]}},
    )
    assert location.status_code == 201, location.text
    service = await client.post(
        "/v1/services",
        headers=partner,
        json={"name": "Maraude", "specialisms": ["outreach"], "location_id": location.json()["id"]},
    )
    assert service.status_code == 201, service.text
    areas = []
    for body in ({"radius_km": 5}, {"communes": ["69123"], "radius_km": 3}):
        area = await client.post(
            "/v1/service-areas", headers=partner, json={"service_id": service.json()["id"], **body}
        )
        assert area.status_code == 201, area.text
        areas.append(f"/v1/service-areas/{area.json()['id']}")
    location_url = f"/v1/locations/{location.json()['id']}"

    for round_ in range(6):
        tags = {url: (await client.get(url, headers=partner)).headers["etag"] for url in (*areas, location_url)}
        responses = await asyncio.gather(
            client.patch(areas[0], headers={**partner, "If-Match": tags[areas[0]]}, json={"radius_km": 6 + round_}),
            client.patch(areas[1], headers={**partner, "If-Match": tags[areas[1]]}, json={"radius_km": 2 + round_}),
            client.patch(
                location_url,
                headers={**partner, "If-Match": tags[location_url]},
                json={"point": {"type": "Point", "coordinates": [4.83 + round_ / 1000, 45.76]}},
            ),
        )
        assert [r.status_code for r in responses] == [200, 200, 200], [r.text for r in responses]

    radii = [(await client.get(url, headers=partner)).json()["radius_km"] for url in areas]
    assert radii == [11, 7]
    # The coverage holds the last writes: 11 km around the last point reaches 10 km east of it.
    found = await client.get(
        "/v1/services/search",
        headers=partner,
        params={"lat": 45.76, "lon": 4.835 + 0.127, "radius_km": 1, "specialism": "outreach"},
    )
    assert service.json()["id"] in [f["id"] for f in found.json()["features"]], found.text


async def _new_partner(app: FastAPI, client: httpx.AsyncClient, name: str) -> dict[str, str]:
    """Headers of a partner acting for a new organisation, created by an admin and committed."""
    admin = {"Authorization": "Bearer " + app.state.tokens.issue(subject="admin", role=Role.admin)}
    org = await client.post("/v1/organisations", headers=admin, json={"name": name, "kind": "association"})
    assert org.status_code == 201, org.text
    token = app.state.tokens.issue(subject="asso", role=Role.partner, organisation_id=org.json()["id"])
    return {"Authorization": "Bearer " + token}


async def test_writes_without_if_match_wait_instead_of_failing(live: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """Twenty racing verifications (no If-Match: a write that needs no precondition) all succeed, one
    after the other, each recorded against what the previous one left."""
    app, client = live
    partner = await _new_partner(app, client, "Asso vérifie")
    service = await client.post("/v1/services", headers=partner, json={"name": "Vérifié", "specialisms": ["outreach"]})
    assert service.status_code == 201, service.text
    url = f"/v1/services/{service.json()['id']}"
    responses = await asyncio.gather(*(client.post(f"{url}/verify", headers=partner) for _ in range(20)))
    assert sorted(r.status_code for r in responses) == [200] * 20
    history = (await client.get(f"{url}/history?limit=100", headers=partner)).json()["items"]
    assert sum(item["action"] == "verify" for item in history) == 20


async def test_racing_closures_and_reopenings_with_one_etag_make_exactly_one_change(
    live: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """Closures, reopenings and verifications at once, each with the ETag of one same view of a closed
    service: one wins, and every other one is judged under the row's lock against what the winner left
    (`now at version 3`), not let through by a check made before it and stopped only by the UPDATE."""
    app, client = live
    partner = await _new_partner(app, client, "Asso ferme")
    service = await client.post("/v1/services", headers=partner, json={"name": "Fermé", "specialisms": ["outreach"]})
    assert service.status_code == 201, service.text
    url = f"/v1/services/{service.json()['id']}"
    closed = await client.post(f"{url}/closures", headers={**partner, "If-Match": '"1"'}, json={"message": "Avant"})
    assert closed.status_code == 200, closed.text
    tag = closed.headers["etag"]
    assert tag == '"2"'
    writes = [
        ("closures", {"message": "Inventaire"}, "closure"),
        ("reopen", None, "reopen"),
        ("verify", None, "verify"),
    ]

    async def write(i: int) -> httpx.Response:
        path, body, _ = writes[i % 3]
        return await client.post(f"{url}/{path}", headers={**partner, "If-Match": tag}, json=body)

    responses = await asyncio.gather(*(write(i) for i in range(21)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * 20, [r.text for r in responses]
    winner = next(i for i, r in enumerate(responses) if r.status_code == 200)
    assert responses[winner].headers["etag"] == '"3"'
    details = {r.json()["detail"] for r in responses if r.status_code == 412}
    assert details == {"this record is now at version 3: read it again"}
    history = (await client.get(f"{url}/history?limit=100", headers=partner)).json()["items"]
    assert [item["action"] for item in history] == ["create", "closure", writes[winner % 3][2]]


async def test_a_status_write_checks_its_if_match_under_the_row_lock(live: tuple[FastAPI, httpx.AsyncClient]) -> None:
    """A closure or a verification holding the current ETag, while another writer holds the row: it
    waits for the row's lock, then judges If-Match against what that writer committed (`now at
    version N`) — no check made on the version read before the lock, stopped only by the UPDATE."""
    app, client = live
    partner = await _new_partner(app, client, "Asso verrou")
    service = await client.post("/v1/services", headers=partner, json={"name": "Verrou", "specialisms": ["outreach"]})
    assert service.status_code == 201, service.text
    url, service_id = f"/v1/services/{service.json()['id']}", service.json()["id"]
    for path, body in (("closures", {"message": "Inventaire"}), ("verify", None), ("reopen", None)):
        tag = (await client.get(url, headers=partner)).headers["etag"]
        version = int(tag.strip('"'))
        async with app.state.reader.connection() as other, app.state.reader.connection() as watcher:
            async with other.transaction():  # another writer, holding the row until it commits
                await other.execute(
                    "UPDATE service SET version = version + 1, closure_message = 'Autre' WHERE id = %s",
                    (service_id,),
                )
                write = asyncio.create_task(
                    client.post(f"{url}/{path}", headers={**partner, "If-Match": tag}, json=body)
                )
                for _ in range(500):  # until the write waits for the row (pg_stat_activity, no timing)
                    waiting = await (
                        await watcher.execute(
                            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                            " AND datname = current_database()"
                        )
                    ).fetchone()
                    if waiting and waiting[0]:
                        break
                    await asyncio.sleep(0.01)
                else:
                    raise AssertionError("the write never waited for the row")
            refused = await write
        assert refused.status_code == 412, refused.text
        assert refused.json()["detail"] == f"this record is now at version {version + 1}: read it again"


async def test_a_location_move_and_its_services_closure_queue_without_deadlock(
    live: tuple[FastAPI, httpx.AsyncClient],
) -> None:
    """A location's move (it reaches its services' coverage) and a closure of its service (which
    changes that coverage) take the service first, then the coverage lock: they queue, ten times over."""
    app, client = live
    partner = await _new_partner(app, client, "Asso déménage")
    location = await client.post(
        "/v1/locations",
        headers=partner,
        json={"name": "Local", "commune_code": "69123", "point": {"type": "Point", "coordinates": [4.84, 45.76]}},
    )
    assert location.status_code == 201, location.text
    service = await client.post(
        "/v1/services",
        headers=partner,
        json={"name": "Mobile", "specialisms": ["outreach"], "location_id": location.json()["id"]},
    )
    assert service.status_code == 201, service.text
    location_url, service_url = f"/v1/locations/{location.json()['id']}", f"/v1/services/{service.json()['id']}"
    tag = location.headers["etag"]
    for round_ in range(10):
        moved, closed = await asyncio.gather(
            client.patch(
                location_url,
                headers={**partner, "If-Match": tag},
                json={"point": {"type": "Point", "coordinates": [4.84 + 0.001 * (round_ % 2), 45.76]}},
            ),
            client.post(f"{service_url}/closures", headers=partner, json={})
            if round_ % 2 == 0
            else client.post(f"{service_url}/reopen", headers=partner),
        )
        assert (moved.status_code, closed.status_code) == (200, 200), (moved.text, closed.text)
        tag = moved.headers["etag"]
