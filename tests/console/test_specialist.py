"""The specialist's journey in the console, in Chromium: log in, find services near where the child is
(keyboard only), read why each is there, see an empty search explained, open a pseudonymous case, see
the competent CRIPs, send an information préoccupante and an orientation, record a runaway and a return.

What the console shows is compared with what the API answers to the same question (asked here with a
token of our own), and what it writes with the database. The place searched for never reaches the URL,
the history, the browser's storage or the server's log."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import psycopg
from playwright.sync_api import Page, expect

from api.app import build_token_service
from api.settings import Settings
from directory.access import Role
from tests.console.conftest import ARTIFACTS, ConsoleServer, check_a11y, login, network_log, screenshot

PLACE = "Lyon"
PLACE_CODE = "69123"


def _api(server: ConsoleServer, path: str, **params: Any) -> Any:
    token = build_token_service(Settings(var_dir=server.var)).issue(subject="test-specialist", role=Role.specialist)
    response = httpx.get(
        f"{server.base_url}{path}", params=params, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code == 200, response.text
    return response.json()


def _search_by_keyboard(page: Page, text: str) -> None:
    """Type the place, pick the first suggestion with the arrow keys, submit with Enter."""
    place = page.get_by_label("Lieu où se trouve l’enfant")
    place.focus()
    page.keyboard.type(text)
    expect(page.get_by_role("option").first).to_be_visible()
    page.keyboard.press("ArrowDown")
    page.keyboard.press("Enter")
    expect(page.locator("#search-form")).to_contain_text("Lieu retenu")
    page.keyboard.press("Enter")


def test_a_specialist_searches_opens_a_case_and_follows_the_pathway(page: Page, console_server: ConsoleServer) -> None:
    log = network_log(page)
    login(page, "specialiste")
    expect(page.locator("#search-form")).to_be_visible()
    history_before = page.evaluate("history.length")
    check_a11y(page, "specialist-search-form")

    # --- a search near Lyon, keyboard only --------------------------------------------------------
    _search_by_keyboard(page, PLACE)
    expected = _api(console_server, "/v1/services/search", commune=PLACE_CODE, radius_km=30)
    names = [feature["properties"]["name"] for feature in expected["features"]]
    assert names, "the demo listings have services near Lyon"
    cards = page.locator("#results > li")
    expect(cards).to_have_count(len(names))
    assert [cards.nth(i).locator("h3").inner_text() for i in range(len(names))] == names
    expect(page.get_by_role("status").filter(has_text="trouvé")).to_contain_text(f"{len(names)} service")

    # Why each is there, and a safe house shown at its commune with its front door only.
    first = expected["features"][0]["properties"]
    expect(cards.first).to_contain_text("Pourquoi ce service")
    if first["distance_m"] is not None:
        expect(cards.first).to_contain_text("À ")
    for index, feature in enumerate(expected["features"]):
        properties = feature["properties"]
        if properties["front_door"] is not None:  # a safe house this specialist has no handoff to
            assert properties["location_precision"] == "commune"
            card = cards.nth(index)
            expect(card).to_contain_text("Lieu confidentiel")
            expect(card).to_contain_text(properties["commune"]["name"])
            assert properties["address"] is None
            # Its distance is the API's, rounded to the km: said as approximate, never in metres.
            expect(card).to_contain_text("km environ")
            assert re.search(r"\d+ m\b", card.inner_text()) is None
            expect(card).not_to_contain_text("Ne la communiquez jamais")
            safe_house = index
            break
    else:
        raise AssertionError("the demo listings near Lyon should include a safe house")

    # The map comes with the first results (and not before), and draws on WebGL.
    expect(page.locator("#results-map canvas")).to_be_visible()
    timing = page.evaluate("performance.getEntriesByName('mx-search-to-first-result').map(e => e.duration)")
    assert len(timing) == 1
    assert timing[0] > 0
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "time-to-first-result.json").write_text(json.dumps({"ms": round(timing[0], 1)}))
    page.wait_for_timeout(500)  # tiles drawn for the screenshot
    check_a11y(page, "specialist-results")
    screenshot(page, "specialist-search")
    page.screenshot(path=ARTIFACTS / "readme-specialist-search.png")  # the first screen, for the README

    # --- the place stays in the page's memory ------------------------------------------------------
    assert page.url == f"{console_server.base_url}/console"
    assert page.evaluate("history.length") == history_before
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    log.settle()
    sent = [r.url for r in log.entries() if "/v1/" in r.url]
    assert any("commune=69123" in url for url in sent), "the search went to the API"
    server_log = console_server.log.read_text(encoding="utf-8")
    for secret in (PLACE_CODE, "q=Lyo", "commune="):
        assert secret not in server_log, f"{secret!r} reached the server's log"
    # The map's tiles (fetched by MapLibre's worker) are Maillage's own, logged by their route only.
    assert "/v1/tiles/{z}/{x}/{y}.mvt" in server_log, "the map read Maillage's own tiles"
    assert not re.search(r"/v1/tiles/\d", server_log), "a tile's z/x/y reached the server's log"

    # --- an empty search says why -------------------------------------------------------------------
    page.get_by_label("Spécialité").select_option("unaccompanied-minors")
    page.get_by_label("Rayon").select_option("10")
    page.get_by_label("Âge de l’enfant", exact=True).fill("3")
    page.locator("#search-form").get_by_role("button", name="Rechercher").click()
    empty = _api(
        console_server,
        "/v1/services/search",
        commune=PLACE_CODE,
        radius_km=10,
        specialism="unaccompanied-minors",
        age=3,
    )
    assert empty["features"] == []
    assert empty["empty_reason"] is not None
    alert = page.locator(".fr-alert").filter(has_text="Aucun service trouvé")
    expect(alert).to_contain_text(empty["empty_reason"]["detail"])
    expect(cards).to_have_count(0)

    # --- orient towards the safe house of the first search --------------------------------------------
    page.get_by_label("Spécialité").select_option("")
    page.get_by_label("Rayon").select_option("30")
    page.get_by_label("Âge de l’enfant", exact=True).fill("")
    page.locator("#search-form").get_by_role("button", name="Rechercher").click()
    expect(cards).to_have_count(len(names))
    target = expected["features"][safe_house]
    cards.nth(safe_house).get_by_role("button", name=re.compile("Orienter vers ce service")).click()
    expect(page.get_by_role("heading", name="Ouvrir un dossier")).to_be_visible()
    expect(page.locator("#case-form")).to_contain_text(target["properties"]["name"])

    with psycopg.connect(console_server.owner_url) as conn:
        cases_before = conn.execute("SELECT count(*) FROM case_record").fetchone()[0]  # type: ignore[index]
    page.get_by_label("Âge de l’enfant").fill("15")
    page.get_by_label("Département de résidence").select_option("69M")
    page.get_by_label("Appelant·e").select_option("parent")
    page.locator("label", has_text="Ne pas contacter les parents").click()  # DSFR draws the box on the label
    expect(page.get_by_label("Ne pas contacter les parents")).to_be_checked()
    check_a11y(page, "specialist-case-form")
    page.get_by_role("button", name="Ouvrir le dossier").press("Enter")
    expect(page.locator("#case-id")).to_have_text(re.compile("^[0-9a-f-]{36}$"))
    case_id = page.locator("#case-id").inner_text()
    with psycopg.connect(console_server.owner_url) as conn:
        row = conn.execute(
            "SELECT age, collectivite_code, caller, do_not_contact_parents FROM case_record WHERE id = %s", (case_id,)
        ).fetchone()
        assert conn.execute("SELECT count(*) FROM case_record").fetchone()[0] == cases_before + 1  # type: ignore[index]
    assert row == (15, "69M", "parent", True)

    # The competent CRIP: the Métropole de Lyon's.
    crips = _api(console_server, f"/v1/cases/{case_id}/competent-crips")
    assert [c["collectivite"]["code"] for c in crips] == ["69M"]
    expect(page.locator("section", has_text="CRIP compétentes")).to_contain_text(crips[0]["crip"]["name"])

    # An information préoccupante to that CRIP (a double click sends one), then the orientation, by keyboard.
    ip_form = page.locator("form[data-kind=information_preoccupante]")
    ip_form.get_by_label("Urgence").select_option("immediate")
    ip_form.get_by_role("button").dblclick()
    expect(page.locator("#case-status")).to_contain_text("Information préoccupante envoyée")
    orientation = page.locator("form[data-kind=orientation]")
    orientation.get_by_role("button", name="Envoyer l’orientation").press("Enter")
    expect(page.locator("#case-status")).to_contain_text("Orientation envoyée")

    # A runaway, then the return.
    page.get_by_role("button", name="Signaler une fugue").click()
    expect(page.locator("#case-status")).to_contain_text("Fugue enregistrée")
    page.get_by_role("button", name="Signaler un retour").click()
    expect(page.locator("#case-status")).to_contain_text("Retour de fugue enregistré")
    pathway = page.locator("#pathway > li")
    expect(pathway).to_have_count(4)
    expect(pathway.nth(0)).to_contain_text("Information préoccupante envoyée")
    expect(pathway.nth(1)).to_contain_text("Orientation envoyée")
    expect(pathway.nth(2)).to_contain_text("Fugue")
    expect(pathway.nth(3)).to_contain_text("Retour de fugue")

    with psycopg.connect(console_server.owner_url) as conn:
        handoffs = conn.execute(
            "SELECT kind, urgency, receiver_organisation_id, receiver_service_id, id FROM handoff"
            " WHERE case_id = %s ORDER BY created_at",
            (case_id,),
        ).fetchall()
        events = conn.execute(
            "SELECT kind FROM case_event WHERE case_id = %s ORDER BY occurred_at, recorded_at", (case_id,)
        ).fetchall()
    orientation_id = handoffs[1][4]
    assert [(kind, urgency) for kind, urgency, _, _, _ in handoffs] == [
        ("information_preoccupante", "immediate"),
        ("orientation", "within_24h"),
    ]
    assert str(handoffs[0][2]) == crips[0]["crip"]["id"]
    assert (str(handoffs[1][2]), str(handoffs[1][3])) == (target["properties"]["organisation"]["id"], target["id"])
    assert [kind for (kind,) in events] == ["runaway_started", "runaway_ended"]
    check_a11y(page, "specialist-case")
    screenshot(page, "specialist-case")

    # Once the safe house accepts the orientation, this specialist sees it exactly: its address, set
    # apart with the rule never to pass it on, and no front door any more.
    partner = build_token_service(Settings(var_dir=console_server.var)).issue(
        subject="test-safe-house", role=Role.partner, organisation_id=target["properties"]["organisation"]["id"]
    )
    for step in ("acknowledged", "accepted"):
        moved = httpx.post(
            f"{console_server.base_url}/v1/handoffs/{orientation_id}/transitions",
            json={"to": step},
            headers={"Authorization": f"Bearer {partner}"},
            timeout=30,
        )
        assert moved.status_code == 200, moved.text
    with psycopg.connect(console_server.owner_url) as conn:
        (address,) = conn.execute(  # type: ignore[misc]
            "SELECT l.address FROM service s JOIN location l ON l.id = s.location_id WHERE s.id = %s", (target["id"],)
        ).fetchone()
    assert address
    page.locator("#tabs").get_by_role("button", name="Rechercher").click()
    _search_by_keyboard(page, PLACE)
    card = page.locator(f"#result-{target['id']}")
    expect(card.locator(".mx-confidential")).to_contain_text("Ne la communiquez jamais")
    expect(card.locator(".mx-confidential")).to_contain_text(address)
    expect(card).not_to_contain_text("porte d’entrée")
    assert page.url == f"{console_server.base_url}/console"
