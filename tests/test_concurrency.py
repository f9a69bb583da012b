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
